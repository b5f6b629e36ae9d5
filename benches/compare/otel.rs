//! Instrumentation cost, OpenTelemetry (`instr_otel_per_close`, `instr_otel_per_message`, with
//! the `otel` feature): the batches of [`crate::instrumentation`] without and with
//! `wsclose::otel::install` and an SDK meter provider. Installing it is for the rest of a
//! process, so each measurement runs in a child process of its own ([`crate::child`]).

#[cfg(feature = "otel")]
use tokio::runtime::Runtime;
#[cfg(feature = "otel")]
use wsclose::WebSocket;

#[cfg(feature = "otel")]
use crate::child;
#[cfg(feature = "otel")]
use crate::harness::{Mode, current_thread, interleave_blocking, median};
use crate::harness::{Plan, Row};
#[cfg(feature = "otel")]
use crate::instrumentation::{lifecycle_batch, mem_pair, message_batch};

/// In a child process: the instrumentation rows' batches without OpenTelemetry, then (after
/// `wsclose::otel::install` with an SDK meter provider, unless `control`) again. Prints the
/// medians of both blocks.
#[cfg(feature = "otel")]
pub(crate) fn otel_child(plan: &Plan, control: bool) {
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    let rt = current_thread();
    let mut pair = rt.block_on(async {
        let (s, c) = mem_pair().await;
        (WebSocket::server(s), WebSocket::client(c))
    });
    let mut measure = |rt: &Runtime| {
        for _ in 0..3 {
            rt.block_on(lifecycle_batch(plan.instr_closes));
        }
        rt.block_on(message_batch(&mut pair, plan.instr_messages));
        let closes: Vec<f64> = (0..plan.instr_reps)
            .map(|_| rt.block_on(lifecycle_batch(plan.instr_closes)))
            .collect();
        let messages: Vec<f64> = (0..plan.instr_reps)
            .map(|_| rt.block_on(message_batch(&mut pair, plan.instr_messages)))
            .collect();
        (median(&closes), median(&messages))
    };
    let (close_off, message_off) = measure(&rt);
    // The SDK aggregates every measurement as it is recorded; the periodic reader exports from
    // its own thread (every 60 s by default, so not during these batches), as with OTLP.
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    if !control {
        wsclose::otel::install(&provider).expect("first install");
    }
    let (close_on, message_on) = measure(&rt);
    println!(
        "otel close_off={close_off} close_on={close_on} message_off={message_off} message_on={message_on}"
    );
    drop(pair);
    std::process::exit(0);
}

/// OpenTelemetry's rows. Installing it is for the rest of a process, so a child process
/// measures a block of batches without it, installs it, and measures a second block. The
/// second block of a process is a little slower even with nothing installed (100–300 ns per
/// close here: the allocator and the runtime have grown), so control children run the same two
/// blocks without installing, and their difference is subtracted. Otel and control children
/// alternate (A B, B A, …), `storm_reps` of each.
#[cfg(feature = "otel")]
pub(crate) fn bench_otel(plan: &Plan, rows: &mut Vec<Row>) {
    let wants_close = plan.wants("instr_otel_per_close");
    let wants_message = plan.wants("instr_otel_per_message");
    if !wants_close && !wants_message {
        return;
    }
    let run_child = |control: bool| -> [f64; 4] {
        let mut cmd = child::instr_otel(control);
        // The child measures with the same plan as this process (`Plan::from_env`).
        if plan.mode == Mode::Quick {
            cmd.arg("--quick");
        }
        let out = cmd.output().expect("otel child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let values: Option<Vec<f64>> =
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("otel "))
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|kv| kv.split_once('=')?.1.parse().ok())
                        .collect()
                });
        match values.as_deref() {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => panic!(
                "otel child failed: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    let (otel, control) =
        interleave_blocking(plan.storm_reps, || run_child(false), || run_child(true));
    // Columns: closes without, with (0, 1); messages without, with (2, 3).
    let second_minus_first = |runs: &[[f64; 4]], off: usize| -> f64 {
        median(&runs.iter().map(|r| r[off + 1] - r[off]).collect::<Vec<_>>())
    };
    let children = otel.len();
    let rows_wanted = [
        (
            wants_close,
            "instr_otel_per_close",
            "per_close_ns",
            0,
            "open+close+end per conn over an in-memory duplex",
        ),
        (
            wants_message,
            "instr_otel_per_message",
            "per_message_ns",
            2,
            "16 B one way, both ends wrapped, in-memory duplex",
        ),
    ];
    for (wanted, name, key, off, what) in rows_wanted {
        if !wanted {
            continue;
        }
        let cost = second_minus_first(&otel, off) - second_minus_first(&control, off);
        let raw = median(&otel.iter().map(|r| r[off]).collect::<Vec<_>>());
        rows.push(Row {
            name: name.into(),
            raw,
            wsclose: raw + cost,
            unit: "ns",
            cost_ratio: (raw + cost) / raw,
            extra: vec![(key, format!("{cost:.0}"))],
            note: format!(
                "{what}; without vs with wsclose::otel installed (SDK meter provider, periodic \
                 reader); {children} child processes, less {children} control ones"
            ),
        });
    }
}

#[cfg(not(feature = "otel"))]
pub(crate) fn bench_otel(plan: &Plan, _rows: &mut Vec<Row>) {
    if plan.wants("instr_otel") {
        eprintln!(
            "compare: instr_otel_per_close / instr_otel_per_message need the otel feature (cargo bench --bench compare --features otel)"
        );
    }
}
