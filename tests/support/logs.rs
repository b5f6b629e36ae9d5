//! Captures `tracing` events of the test thread as structured records.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

#[derive(Debug, Clone)]
pub struct Record {
    pub level: Level,
    pub target: String,
    pub fields: BTreeMap<String, String>,
}

impl Record {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<Record>>>);

impl Logs {
    pub fn records(&self) -> Vec<Record> {
        self.0.lock().unwrap().clone()
    }

    /// Records whose message is `message`.
    pub fn with_message(&self, message: &str) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.field("message") == Some(message))
            .collect()
    }

    pub fn at_level(&self, level: Level) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.level == level)
            .collect()
    }
}

struct Capture(Logs);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// A span's recorded fields, kept in its extensions.
struct SpanFields(BTreeMap<String, String>);

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        fields.insert("name".into(), attrs.metadata().name().into());
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut f.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        // Span fields are visible as `span.<field>`.
        if let Some(span) = ctx.event_span(event) {
            if let Some(f) = span.extensions().get::<SpanFields>() {
                for (k, v) in &f.0 {
                    fields.insert(format!("span.{k}"), v.clone());
                }
            }
        }
        let meta = event.metadata();
        self.0.0.lock().unwrap().push(Record {
            level: *meta.level(),
            target: meta.target().to_owned(),
            fields,
        });
    }
}

/// Captures every event (all levels) on this thread while the guard lives.
pub fn capture() -> (Logs, DefaultGuard) {
    let logs = Logs::default();
    let subscriber = Registry::default().with(Capture(logs.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}
