//! Operating the runtime: a scrape of the metrics endpoint during a run parses strictly and has
//! every listed series; status reports lag and tasks; the sync loop never lists the bucket in
//! steady state; verification and the restore drill run as scheduled tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use finn::checkpoint::fault::{FaultStore, OpKind};
use finn::checkpoint::{Remote, RemoteOptions};
use finn::prelude::*;
use finn::runtime::{Intervals, VerifySettings};
use object_store::memory::InMemory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` against the endpoint; returns status code, content type and body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or_default()
        .to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, body.len(), "content-length matches the body");
    (code, content_type, body.to_owned())
}

/// One sample of a scrape.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the OpenMetrics 1.0 text format (what Prometheus scrapes): every sample
/// belongs to a family declared by `# TYPE` before it, with the suffixes its type allows; label
/// syntax and escapes; float values; families contiguous; histogram buckets cumulative and
/// ending at `+Inf` equal to `_count`; the exposition ends with `# EOF` and nothing after.
fn parse_openmetrics(text: &str) -> Result<(BTreeMap<String, String>, Vec<Sample>), String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with '# EOF\\n'")?;
    let valid_name = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        if line.is_empty() {
            return Err(err("empty line"));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !valid_name(name) {
                return Err(err("bad metric name"));
            }
            match kind {
                "TYPE" => {
                    let ty = parts.next().ok_or_else(|| err("TYPE without type"))?;
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "gaugehistogram",
                        "unknown",
                    ]
                    .contains(&ty)
                    {
                        return Err(err("unknown type"));
                    }
                    if types.insert(name.to_owned(), ty.to_owned()).is_some() {
                        return Err(err("family declared twice"));
                    }
                    if let Some(prev) = current.replace(name.to_owned()) {
                        finished.insert(prev);
                    }
                }
                "HELP" | "UNIT" => {
                    if parts.next().is_none() {
                        return Err(err("HELP/UNIT without text"));
                    }
                }
                _ => return Err(err("unknown comment")),
            }
            continue;
        }
        // name{labels} value
        let (name, rest) = match line.find(['{', ' ']) {
            Some(p) => line.split_at(p),
            None => return Err(err("no value")),
        };
        if !valid_name(name) {
            return Err(err("bad sample name"));
        }
        let mut labels = BTreeMap::new();
        let value_part = if let Some(after) = rest.strip_prefix('{') {
            let mut pos = 0;
            loop {
                if after[pos..].starts_with('}') {
                    pos += 1;
                    break;
                }
                let eq = after[pos..]
                    .find('=')
                    .ok_or_else(|| err("label without '='"))?;
                let key = &after[pos..pos + eq];
                if !valid_name(key) || key.contains(':') {
                    return Err(err("bad label name"));
                }
                pos += eq + 1;
                if !after[pos..].starts_with('"') {
                    return Err(err("label value not quoted"));
                }
                pos += 1;
                let mut value = String::new();
                loop {
                    let c = after[pos..]
                        .chars()
                        .next()
                        .ok_or_else(|| err("unterminated label value"))?;
                    pos += c.len_utf8();
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = after[pos..]
                                .chars()
                                .next()
                                .ok_or_else(|| err("dangling escape"))?;
                            pos += e.len_utf8();
                            value.push(match e {
                                '\\' => '\\',
                                '"' => '"',
                                'n' => '\n',
                                _ => return Err(err("bad escape")),
                            });
                        }
                        '\n' => return Err(err("newline in label value")),
                        c => value.push(c),
                    }
                }
                if labels.insert(key.to_owned(), value).is_some() {
                    return Err(err("duplicate label"));
                }
                match after[pos..].chars().next() {
                    Some(',') => pos += 1,
                    Some('}') => {}
                    _ => return Err(err("expected ',' or '}'")),
                }
            }
            &after[pos..]
        } else {
            rest
        };
        let value_text = value_part
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value"))?;
        let value_text = value_text.split(' ').next().unwrap_or("");
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| err("value is not a number"))?,
        };
        let family = types
            .iter()
            .filter(|(f, ty)| {
                let suffixes: &[&str] = match ty.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count", "_created"],
                    "summary" => &["", "_sum", "_count", "_created"],
                    "info" => &["_info"],
                    _ => &[""],
                };
                suffixes.iter().any(|s| format!("{f}{s}") == name)
            })
            .map(|(f, _)| f.clone())
            .next()
            .ok_or_else(|| err("sample of an undeclared family"))?;
        if finished.contains(&family) || current.as_deref() != Some(family.as_str()) {
            return Err(err("family samples are not contiguous"));
        }
        if name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(err("bucket without le"));
        }
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    // Histograms: cumulative buckets ending at +Inf == _count, per label set.
    for (family, ty) in &types {
        if ty != "histogram" {
            continue;
        }
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<BTreeMap<String, String>, f64> = BTreeMap::new();
        for s in &samples {
            let mut key = s.labels.clone();
            if s.name == format!("{family}_bucket") {
                let le = key.remove("le").unwrap_or_default();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| format!("{family}: bad le {le}"))?
                };
                series.entry(key).or_default().push((le, s.value));
            } else if s.name == format!("{family}_count") {
                counts.insert(key, s.value);
            }
        }
        for (key, buckets) in series {
            if !buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
            {
                return Err(format!("{family}{key:?}: buckets not cumulative"));
            }
            let last = buckets.last().copied().unwrap_or((0.0, 0.0));
            if last.0 != f64::INFINITY || Some(&last.1) != counts.get(&key) {
                return Err(format!("{family}{key:?}: +Inf bucket != _count"));
            }
        }
    }
    Ok((types, samples))
}

fn has(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> bool {
    samples.iter().any(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[test]
fn the_parser_rejects_what_prometheus_would() {
    assert!(parse_openmetrics("# TYPE a gauge\na 1\n# EOF\n").is_ok());
    for bad in [
        "# TYPE a gauge\na 1\n",                        // no EOF
        "a 1\n# EOF\n",                                 // undeclared
        "# TYPE a gauge\na{x=1} 1\n# EOF\n",            // unquoted label
        "# TYPE a gauge\na one\n# EOF\n",               // not a number
        "# TYPE a counter\na 1\n# EOF\n",               // counter sample needs _total
        "# TYPE a gauge\n# TYPE b gauge\na 1\n# EOF\n", // not contiguous
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
    ] {
        assert!(parse_openmetrics(bad).is_err(), "{bad:?}");
    }
}

fn fast_intervals() -> Intervals {
    let mut i = Intervals::default();
    i.sync = Duration::from_millis(150);
    i.prune = Duration::from_secs(3600);
    i.health = Duration::from_millis(300);
    i
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_during_a_run_parses_and_has_every_listed_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut verify = VerifySettings::default();
    verify.validate_every = Some(Duration::from_millis(400));
    verify.drill_every = Some(Duration::from_millis(600));
    let finn = Finn::builder(dir.path().join("data"))
        .intervals(fast_intervals())
        .verify(verify)
        .open()
        .await
        .unwrap();
    let endpoint = finn
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = endpoint.local_addr();

    // Write while the scheduled tasks run, until verification and the drill ran.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0u64;
    loop {
        for _ in 0..20 {
            finn.put(
                Kind::Session,
                format!("session/{}", i % 7),
                vec![i as u8; 64],
            )
            .unwrap();
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = finn.status();
        let ran = |id: &str| {
            s.tasks
                .iter()
                .any(|t| t.id == id && t.times.last_success_ms.is_some())
        };
        if ran("object_store_sync") && ran("remote_verify") && ran("restore_drill") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks did not run: {:?}",
            s.tasks
        );
    }

    let (code, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(content_type.starts_with("application/openmetrics-text"));
    let (types, samples) = parse_openmetrics(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    for (family, ty) in [
        ("finn_wal_append_duration_seconds", "histogram"),
        ("finn_wal_sync_duration_seconds", "histogram"),
        ("finn_wal_group_commit_records", "histogram"),
        ("finn_remote_sync_duration_seconds", "histogram"),
        ("finn_restore_duration_seconds", "histogram"),
        ("finn_ship_lag_records", "gauge"),
        ("finn_ship_lag_seconds", "gauge"),
        ("finn_checkpoint_age_seconds", "gauge"),
        ("finn_gc_deleted_bytes", "counter"),
        ("finn_breaker_state", "gauge"),
        ("finn_task_runs", "counter"),
        ("finn_remote_requests", "counter"),
        ("finn_lsn", "gauge"),
        ("finn_verify_ok", "gauge"),
        ("finn_drill_ok", "gauge"),
        ("finn_restorable_as_of_timestamp_seconds", "gauge"),
    ] {
        assert_eq!(types.get(family).map(String::as_str), Some(ty), "{family}");
    }
    assert!(value(&samples, "finn_wal_append_duration_seconds_count", &[]).unwrap() >= i as f64);
    assert!(value(&samples, "finn_wal_group_commit_records_count", &[]).unwrap() >= 1.0);
    assert!(value(&samples, "finn_remote_sync_duration_seconds_count", &[]).unwrap() >= 1.0);
    assert!(
        value(
            &samples,
            "finn_restore_duration_seconds_count",
            &[("kind", "drill")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(has(
        &samples,
        "finn_task_runs_total",
        &[("task", "object_store_sync"), ("outcome", "succeeded")]
    ));
    assert!(has(
        &samples,
        "finn_task_runs_total",
        &[("task", "remote_verify"), ("outcome", "succeeded")]
    ));
    assert_eq!(
        value(
            &samples,
            "finn_breaker_state",
            &[("breaker", "object-store")]
        ),
        Some(0.0)
    );
    assert!(value(&samples, "finn_remote_requests_total", &[("op", "put")]).unwrap() > 0.0);
    assert!(has(&samples, "finn_checkpoint_age_seconds", &[]));
    assert_eq!(value(&samples, "finn_verify_ok", &[]), Some(1.0));
    assert_eq!(value(&samples, "finn_drill_ok", &[]), Some(1.0));
    assert!(value(&samples, "finn_restorable_as_of_timestamp_seconds", &[]).unwrap() > 1.6e9);
    assert!(
        value(&samples, "finn_lsn", &[("which", "local")]).unwrap()
            >= value(&samples, "finn_lsn", &[("which", "shipped")]).unwrap()
    );

    // Status and health over the same endpoint.
    let (code, _, body) = get(addr, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    for field in [
        "local_lsn",
        "durable_lsn",
        "shipped_lsn",
        "checkpointed_lsn",
        "lag_records",
        "lag_seconds",
        "in_sync",
        "pending_bytes",
        "tasks",
        "remote_requests",
    ] {
        assert!(status.get(field).is_some(), "{field} in {body}");
    }
    let (code, _, body) = get(addr, "/health").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(get(addr, "/nope").await.0, 404);

    // Once synced, the status says so.
    finn.ship().await.unwrap();
    let s = finn.status();
    assert!(s.in_sync, "{s:?}");
    assert_eq!(s.lag_records, 0);
    assert_eq!(s.pending_bytes, 0);
    assert!(s.verification.as_ref().is_some_and(|v| v.ok));
    assert!(
        s.drill
            .as_ref()
            .is_some_and(|d| d.ok && d.restorable_as_of_ms.is_some())
    );
    drop(endpoint);
    finn.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_lag_in_records_and_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let finn = Finn::builder(dir.path().join("data"))
        .scheduler(false)
        .open()
        .await
        .unwrap();
    finn.put(Kind::Session, "session/1", vec![7; 100]).unwrap();
    finn.ship().await.unwrap();
    assert!(finn.status().in_sync);
    for i in 0..5 {
        finn.put(Kind::Session, format!("session/{i}"), vec![1; 100])
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let s = finn.status();
    assert!(!s.in_sync);
    assert_eq!(s.lag_records, 5);
    assert!(s.pending_bytes >= 500);
    assert!(s.lag_seconds >= 0.03, "{}", s.lag_seconds);
    assert_eq!(s.local_lsn, s.durable_lsn);
    assert!(s.shipped_lsn < s.durable_lsn);
    finn.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_loop_makes_no_list_request_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = Remote::new(Arc::new(store.clone()), "agent", RemoteOptions::default());
    let mut verify = VerifySettings::default();
    // Validation and drills list on purpose; this test is about the sync loop.
    verify.validate_every = None;
    verify.drill_every = None;
    let finn = Finn::builder(dir.path().join("data"))
        .with_remote(remote)
        .intervals(fast_intervals())
        .verify(verify)
        .open()
        .await
        .unwrap();
    let runs = |finn: &Finn| {
        finn.status()
            .tasks
            .iter()
            .find(|t| t.id == "object_store_sync")
            .map_or(0, |t| t.successes)
    };
    // Warm up: the first sync after open.
    finn.put(Kind::Session, "session/warm", b"x".to_vec())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while runs(&finn) < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(Instant::now() < deadline);
    }
    store.reset_counts();
    let before = runs(&finn);
    let mut i = 0;
    while runs(&finn) < before + 6 {
        finn.put(
            Kind::Session,
            format!("session/{}", i % 5),
            vec![i as u8; 32],
        )
        .unwrap();
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(Instant::now() < deadline, "syncs did not run");
    }
    let counts = store.counts();
    assert!(store.count(OpKind::Put) >= 6, "the syncs wrote: {counts:?}");
    assert_eq!(
        store.count(OpKind::List),
        0,
        "no LIST in steady state: {counts:?}"
    );
    finn.shutdown().await.unwrap();
}

/// A loopback HTTP server counting `GET /ping` requests.
async fn ping_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                if got.starts_with(b"GET /ping ") {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (format!("http://{addr}/ping"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_is_pinged_only_after_a_verified_sync() {
    use std::sync::atomic::Ordering;
    let (url, hits) = ping_server().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FaultStore::new(Arc::new(InMemory::new()));
    let remote = Remote::new(Arc::new(store.clone()), "hb", RemoteOptions::default());
    let mut verify = VerifySettings::default();
    verify.validate_every = None;
    verify.drill_every = None;
    verify.heartbeat_url = Some(url);
    verify.heartbeat_min_interval = Duration::ZERO;
    let finn = Finn::builder(dir.path().join("data"))
        .with_remote(remote)
        .intervals(fast_intervals())
        .verify(verify)
        .open()
        .await
        .unwrap();
    let syncs = |finn: &Finn| {
        finn.status()
            .tasks
            .iter()
            .find(|t| t.id == "object_store_sync")
            .map_or(0, |t| t.successes)
    };
    let wait_syncs = |n: u64| {
        let finn = finn.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            let start = syncs(&finn);
            let mut i = 0u8;
            while syncs(&finn) < start + n {
                finn.put(Kind::Session, "session/hb", vec![i; 8]).unwrap();
                i = i.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert!(Instant::now() < deadline, "syncs did not run");
            }
        }
    };
    // Syncs succeed, but nothing validated the remote yet: no ping.
    wait_syncs(3).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "withheld before any validation"
    );

    // Validated clean: the next syncs ping.
    let report = finn.verify_remote(&Default::default()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);
    wait_syncs(2).await;
    let after_ok = hits.load(Ordering::SeqCst);
    assert!(after_ok >= 1, "pinged after a verified sync");

    // The remote is damaged (the first manifest's bytes replaced): validation finds it and
    // the pings stop while the syncs go on.
    use object_store::ObjectStoreExt as _;
    store
        .inner()
        .put(
            &"hb/manifests/00000000000000000001.manifest".into(),
            b"garbage".to_vec().into(),
        )
        .await
        .unwrap();
    let report = finn.verify_remote(&Default::default()).await.unwrap();
    assert!(!report.is_ok());
    let health = finn.health().await;
    assert_eq!(
        health.overall,
        finn::scheduler::Health::Unhealthy,
        "{health:?}"
    );
    // A sync that read the old verdict just before may still be sending its ping.
    wait_syncs(1).await;
    let settled = hits.load(Ordering::SeqCst);
    wait_syncs(3).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        settled,
        "no ping while the remote is damaged"
    );
    finn.shutdown().await.unwrap();
}
