//! Label cardinality under hostile input: 10,000 peers sending random close codes (every u16,
//! and none) and random reasons (random bytes, UTF-8 with control characters, unique strings)
//! leave the number of `websocket_*` series within the bound docs/metrics.md implies
//! (docs/security.md derives it: 186 label sets, 642 Prometheus series), and with static labels
//! N label sets × that bound, every series of a role and label set created at 0 from its first
//! connection on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use wsclose::{CODE_LABELS, Cause, Config, HandshakeOutcome, Outcome, Role};

use support::pairs::{bounded, wrapped_and_raw};
use support::recorder;

/// A deterministic xorshift64* generator: the same peers every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One hostile peer: a raw frame-level endpoint that closes with `payload` as its Close frame
/// payload, reads one frame back, and hangs up.
async fn hostile(role: Role, rng: &mut Rng, config: &Config) -> wsclose::Handle {
    let code = match rng.below(6) {
        0 | 1 => Some(rng.below(65536) as u16),
        2 => Some(1000 + rng.below(16) as u16),
        3 => Some(2990 + rng.below(2020) as u16),
        4 => None,
        _ => Some(rng.below(1100) as u16),
    };
    let reason: Vec<u8> = match rng.below(3) {
        0 => (0..rng.below(124)).map(|_| rng.next() as u8).collect(),
        1 => {
            let pool = [
                "\n",
                "\r",
                "\u{1b}[31m",
                "\u{202e}",
                "\t",
                "é",
                "日",
                "x",
                "\\",
                "\0",
                "%s",
            ];
            let mut s = String::new();
            while s.len() < rng.below(123) as usize {
                s.push_str(pool[rng.below(pool.len() as u64) as usize]);
            }
            let mut end = s.len().min(123);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.into_bytes()
        }
        _ => format!("reason-{}", rng.next()).into_bytes(),
    };
    let (ws, mut raw) = wrapped_and_raw(role, config).await;
    let handle = ws.handle();
    tokio::spawn(async move {
        let mut ws = ws;
        while let Some(Ok(_)) = ws.next().await {}
    });
    tokio::spawn(async move {
        match code {
            Some(c) => {
                let _ = raw.send_close(Some(c), &reason).await;
            }
            None if reason.is_empty() => {
                let _ = raw.send_close(None, b"").await;
            }
            // A one-byte Close payload: not even a whole code.
            None => {
                let _ = raw
                    .send_frame(true, support::raw::OP_CLOSE, &reason[..1])
                    .await;
            }
        }
        let _ = raw.read_frame_timeout(Duration::from_millis(500)).await;
    });
    handle
}

#[tokio::test]
async fn ten_thousand_hostile_peers_stay_within_the_series_bound() {
    const PEERS: usize = 10_000;
    const BATCH: usize = 250;
    let (m, _g) = recorder::install();
    let config = Config::new()
        .with_close_timeout(Duration::from_millis(500))
        .unwrap();
    let mut rng = Rng(0x0005_EED0_FC10_5E00);
    for batch in 0..PEERS / BATCH {
        let mut handles = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let role = if (batch + i) % 2 == 0 {
                Role::Server
            } else {
                Role::Client
            };
            handles.push(hostile(role, &mut rng, &config).await);
        }
        for h in handles {
            bounded(h.closed()).await;
        }
    }
    // Every series of this crate, grouped by name, with its label set.
    let dump = m.dump();
    let mut series: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for line in dump.lines().filter(|l| l.starts_with("websocket_")) {
        let key = line.split(" = ").next().unwrap();
        let (name, labels) = key.split_once('{').unwrap();
        series
            .entry(name)
            .or_default()
            .insert(labels.trim_end_matches('}'));
    }
    let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    let handshake_outcomes: Vec<&str> = HandshakeOutcome::ALL.iter().map(|o| o.as_str()).collect();
    let causes: Vec<&str> = Cause::ALL.iter().map(|c| c.as_str()).collect();
    let mut codes_seen = BTreeSet::new();
    for (name, sets) in &series {
        for set in sets {
            let labels: BTreeMap<&str, &str> = set
                .split(',')
                .map(|kv| kv.split_once('=').unwrap())
                .collect();
            assert!(
                ["server", "client"].contains(&labels["role"]),
                "{name}{{{set}}}"
            );
            if let Some(o) = labels.get("outcome") {
                // The handshake series carry the handshake's outcomes, the others an end's.
                let allowed = if name.starts_with("websocket_handshake") {
                    &handshake_outcomes
                } else {
                    &outcomes
                };
                assert!(allowed.contains(o), "{name}{{{set}}}");
            }
            if let Some(c) = labels.get("cause") {
                assert!(causes.contains(c), "{name}{{{set}}}");
            }
            if let Some(e) = labels.get("expected") {
                let o: &Outcome = Outcome::ALL
                    .iter()
                    .find(|o| o.as_str() == labels["outcome"])
                    .unwrap();
                assert_eq!(*e, o.is_expected().to_string(), "{name}{{{set}}}");
            }
            if let Some(d) = labels.get("direction") {
                assert!(["sent", "received"].contains(d), "{name}{{{set}}}");
            }
            if let Some(c) = labels.get("code") {
                assert!(CODE_LABELS.contains(c), "{name}{{{set}}}");
                codes_seen.insert(*c);
            }
            let allowed: &[&str] = match *name {
                "websocket_closes_total" => &["role", "cause", "outcome", "expected"],
                "websocket_close_duration_seconds"
                | "websocket_connection_duration_seconds"
                | "websocket_handshakes_total"
                | "websocket_handshake_duration_seconds" => &["role", "outcome"],
                "websocket_close_frames_total" => &["role", "direction", "code"],
                _ => &["role"],
            };
            assert!(
                labels.keys().all(|k| allowed.contains(k)),
                "{name}{{{set}}}"
            );
        }
    }
    // The bound per name (both roles), from the label values of docs/metrics.md; docs/security.md derives it.
    let bound = |name: &str| match name {
        "websocket_closes_total" => 2 * 6 * 6,
        "websocket_close_duration_seconds" | "websocket_connection_duration_seconds" => 2 * 6,
        "websocket_close_frames_total" => 2 * 2 * 16,
        "websocket_handshakes_total" | "websocket_handshake_duration_seconds" => 2 * 4,
        _ => 2,
    };
    let mut total = 0;
    for (name, sets) in &series {
        assert!(
            sets.len() <= bound(name),
            "{name}: {} label sets: {sets:?}",
            sets.len()
        );
        total += sets.len();
    }
    assert!(total <= 186, "{total} label sets");
    // The peers did exercise the label space: many code classes, both roles.
    assert!(codes_seen.len() >= 12, "{codes_seen:?}");
    assert_eq!(
        m.counter_sum("websocket_connections_opened_total", &[]),
        PEERS as u64
    );
    m.assert_balanced("server");
    m.assert_balanced("client");
    eprintln!(
        "{total} label sets after {PEERS} hostile peers: {:?}",
        series.iter().map(|(n, s)| (n, s.len())).collect::<Vec<_>>()
    );
}

/// Splits a dump line `name{k=v,...} = value` into the name and its labels.
fn parse(line: &str) -> (&str, BTreeMap<&str, &str>) {
    let key = line.split(" = ").next().unwrap();
    let (name, labels) = key.split_once('{').unwrap();
    let labels = labels
        .trim_end_matches('}')
        .split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    (name, labels)
}

#[tokio::test]
async fn static_label_sets_multiply_the_bound_and_nothing_else() {
    const PEERS: usize = 1_500;
    const BATCH: usize = 150;
    const ENDPOINTS: [&str; 3] = ["/a", "/b", "/c"];
    let (m, _g) = recorder::install();
    let configs: Vec<Config> = ENDPOINTS
        .iter()
        .map(|e| {
            Config::new()
                .with_close_timeout(Duration::from_millis(500))
                .unwrap()
                .with_label("endpoint", e)
                .unwrap()
                .with_label("region", "test")
                .unwrap()
        })
        .collect();
    let mut rng = Rng(0x5747_1C1A_BE15_0001);
    for batch in 0..PEERS / BATCH {
        let mut handles = Vec::with_capacity(BATCH);
        for i in 0..BATCH {
            let role = if (batch + i) % 2 == 0 {
                Role::Server
            } else {
                Role::Client
            };
            let config = &configs[rng.below(ENDPOINTS.len() as u64) as usize];
            handles.push(hostile(role, &mut rng, config).await);
        }
        for h in handles {
            bounded(h.closed()).await;
        }
    }
    let dump = m.dump();
    // (endpoint, role) -> name -> label sets
    let mut sets: BTreeMap<(String, String), BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in dump.lines().filter(|l| l.starts_with("websocket_")) {
        let (name, labels) = parse(line);
        assert_eq!(labels.get("region"), Some(&"test"), "{line}");
        let endpoint = labels
            .get("endpoint")
            .copied()
            .unwrap_or_else(|| panic!("{line}"));
        assert!(ENDPOINTS.contains(&endpoint), "{line}");
        sets.entry((endpoint.to_owned(), labels["role"].to_owned()))
            .or_default()
            .entry(name.to_owned())
            .or_default()
            .insert(line.split(" = ").next().unwrap().to_owned());
    }
    // Every (endpoint, role) pair was used, and each has its 91 zero-created label sets at
    // least and the per-role bound (93) at most.
    assert_eq!(sets.len(), ENDPOINTS.len() * 2, "{:?}", sets.keys());
    let per_role_bound = |name: &str| match name {
        "websocket_closes_total" => 6 * 6,
        "websocket_close_duration_seconds" | "websocket_connection_duration_seconds" => 6,
        "websocket_close_frames_total" => 2 * 16,
        "websocket_handshakes_total" | "websocket_handshake_duration_seconds" => 4,
        _ => 1,
    };
    let mut total = 0;
    for (pair, names) in &sets {
        let n: usize = names.values().map(BTreeSet::len).sum();
        assert!((91..=93).contains(&n), "{pair:?}: {n} label sets");
        for (name, s) in names {
            assert!(s.len() <= per_role_bound(name), "{pair:?} {name}: {s:?}");
        }
        total += n;
    }
    assert!(total <= ENDPOINTS.len() * 186, "{total} label sets");
    assert_eq!(
        m.counter_sum("websocket_connections_opened_total", &[]),
        PEERS as u64
    );
    for e in ENDPOINTS {
        for role in ["server", "client"] {
            let opened = m.counter_sum(
                "websocket_connections_opened_total",
                &[("endpoint", e), ("role", role)],
            );
            let closed =
                m.counter_sum("websocket_closes_total", &[("endpoint", e), ("role", role)]);
            assert_eq!(opened, closed, "{e} {role}: every connection ended once");
        }
    }
    eprintln!(
        "{total} label sets for {} static label sets after {PEERS} hostile peers",
        ENDPOINTS.len()
    );
}
