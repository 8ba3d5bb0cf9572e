//! The deployment files, checked as far as this machine allows (no container engine):
//! every YAML and JSON file parses; every metric the Grafana dashboard and the Prometheus
//! rules query is one the services really export (scraped from a counter and a ranker on
//! the local broker); the configuration files the stack mounts pass `trendwatch config
//! check`; the topic set-up script creates the topics the services expect, shaped as they
//! expect. (`promtool check config` and `check rules` run from `scripts/deploy-check.sh`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use trendwatch_config::Config;
use trendwatch_tests::{Scenario, encode, root, serial, trendwatch_bin, workload};

/// Every file under `dir` (recursively) whose name ends with one of `extensions`.
fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if extensions
                .iter()
                .any(|e| path.to_string_lossy().ends_with(e))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Every document of a YAML file.
fn yaml_documents(path: &Path) -> Vec<serde_norway::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            serde_norway::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .collect()
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

#[test]
fn every_yaml_and_json_file_parses() {
    let mut yaml = files(&deploy(), &[".yml", ".yaml"]);
    yaml.push(root().join("docker-compose.yml"));
    let mut documents = 0;
    for path in &yaml {
        let docs = yaml_documents(path);
        assert!(!docs.is_empty(), "{}: empty", path.display());
        documents += docs.len();
    }
    let json = files(&deploy(), &[".json"]);
    for path in &json {
        let text = std::fs::read_to_string(path).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    }
    assert!(yaml.len() >= 10 && !json.is_empty(), "{yaml:?} {json:?}");
    eprintln!(
        "deploy: {} YAML files ({documents} documents), {} JSON files parse",
        yaml.len(),
        json.len()
    );
}

/// Names `trendwatch_*` in a PromQL expression.
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("trendwatch_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
}

/// Every string under an `expr` key, at any depth.
fn json_exprs(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => metric_names(s, out),
                    _ => json_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_exprs(v, out)),
        _ => {}
    }
}

fn yaml_exprs(v: &serde_norway::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_norway::Value::Mapping(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    (Some("expr"), serde_norway::Value::String(s)) => metric_names(s, out),
                    _ => yaml_exprs(v, out),
                }
            }
        }
        serde_norway::Value::Sequence(a) => a.iter().for_each(|v| yaml_exprs(v, out)),
        _ => {}
    }
}

/// The metric names a `/metrics` page exports (a histogram's `_bucket`, `_sum` and
/// `_count` series included).
fn exported(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_dashboard_and_the_alert_rules_query_only_metrics_the_services_export() {
    let _one_at_a_time = serial();
    let mut queried = BTreeSet::new();
    for path in files(&deploy().join("grafana"), &[".json"]) {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        json_exprs(&v, &mut queried);
    }
    let from_dashboard = queried.len();
    let mut by_rules = BTreeSet::new();
    for path in files(
        &deploy().join("prometheus").join("rules"),
        &[".yml", ".yaml"],
    ) {
        for doc in yaml_documents(&path) {
            yaml_exprs(&doc, &mut by_rules);
        }
    }
    assert!(
        from_dashboard >= 10 && by_rules.len() >= 5,
        "dashboard {queried:?}, rules {by_rules:?}"
    );
    let from_rules = by_rules.len();
    queried.extend(by_rules);

    // A live counter and ranker, fed a workload with a bad record so the labelled series
    // (rejections, dead letters, alerts) exist.
    let s = Scenario::new("deploy-metrics", 2);
    let mut records = encode(&workload(21, 30_000));
    records.insert(
        100,
        (Some(b"v-bad".to_vec()), b"\xff\xfenot protobuf".to_vec()),
    );
    let counter = s.start_counter("counter");
    let ranker = s.start_ranker("ranker");
    s.publish_raw(&records, None);
    let total = records.len() as f64;
    counter.wait_for("the stream", Duration::from_secs(120), |c| {
        c.metrics()
            .sum(trendwatch_runtime::telemetry::RECORDS_CONSUMED, &[])
            >= total
    });
    ranker.wait_for("boards", Duration::from_secs(120), |r| {
        r.metrics()
            .sum(trendwatch_runtime::telemetry::RANKER_BOARDS, &[])
            >= 10.0
    });
    // Let a checkpoint round and a tick publish their metrics.
    std::thread::sleep(Duration::from_secs(3));
    let mut live = exported(&counter.get("/metrics").unwrap());
    live.extend(exported(&ranker.get("/metrics").unwrap()));
    ranker.stop();
    counter.stop();

    let missing: Vec<&String> = queried.iter().filter(|m| !live.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard or the rules but not exported by a live counter or ranker: {missing:?}\nexported: {live:?}"
    );
    eprintln!(
        "deploy: {} metric names queried ({from_dashboard} by the dashboard, {from_rules} by the rules), all exported",
        queried.len()
    );
}

/// Runs `trendwatch config check` on `path`, failing with its errors.
fn config_check(path: &Path) -> Config {
    let out = std::process::Command::new(trendwatch_bin())
        .args(["config", "check"])
        .arg(path)
        .env_remove("TRENDWATCH_BOOTSTRAP_SERVERS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Config::load(Some(path), Vec::new()).unwrap()
}

#[test]
fn the_configuration_the_stack_mounts_passes_config_check() {
    let compose = config_check(&deploy().join("config").join("trendwatch.toml"));
    assert_eq!(
        compose.telemetry.metrics_addr.ip().to_string(),
        "0.0.0.0",
        "in a container the metrics listener must not be loopback"
    );

    // The Kubernetes ConfigMap carries its own copy.
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for path in files(&deploy().join("kubernetes"), &[".yml", ".yaml"]) {
        for doc in yaml_documents(&path) {
            if doc.get("kind").and_then(|k| k.as_str()) != Some("ConfigMap") {
                continue;
            }
            let Some(data) = doc.get("data").and_then(|d| d.as_mapping()) else {
                continue;
            };
            for (name, text) in data {
                let (Some(name), Some(text)) = (name.as_str(), text.as_str()) else {
                    continue;
                };
                if !name.ends_with(".toml") {
                    continue;
                }
                let file = dir.path().join(name);
                std::fs::write(&file, text).unwrap();
                let k8s = config_check(&file);
                assert_eq!(k8s.telemetry.metrics_addr.ip().to_string(), "0.0.0.0");
                assert_eq!(
                    k8s.topics, compose.topics,
                    "{name}: other topic names than compose"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no trendwatch.toml in a Kubernetes ConfigMap");
}

/// `create NAME PARTITIONS [--config k=v ...]` lines of the topic script, with
/// `$COMPACTED` standing for `cleanup.policy=compact`.
fn scripted_topics(script: &str) -> BTreeMap<String, (String, bool)> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("create ") && !l.starts_with("create()"))
        .filter_map(|l| {
            let mut words = l.split_whitespace().skip(1);
            let name = words.next()?.trim_matches('"').to_string();
            let partitions = words.next()?.trim_matches('"').to_string();
            let compacted = l.contains("cleanup.policy=compact") || l.contains("$COMPACTED");
            Some((name, (partitions, compacted)))
        })
        .collect()
}

#[test]
fn the_topic_setup_matches_what_the_services_expect() {
    let script = std::fs::read_to_string(deploy().join("kafka").join("create-topics.sh")).unwrap();
    let compacted_def = script.contains("COMPACTED=\"--config cleanup.policy=compact");
    assert!(compacted_def, "$COMPACTED must mean cleanup.policy=compact");
    let scripted = scripted_topics(&script);
    let config = Config::load(
        Some(&deploy().join("config").join("trendwatch.toml")),
        Vec::new(),
    )
    .unwrap();
    // A marker partition count: topics created with the events topic's count get it.
    const P: i32 = 997;
    let expected = trendwatch_runtime::client::all_topics(&config, P);
    for spec in &expected {
        let (partitions, compacted) = scripted
            .get(&spec.name)
            .unwrap_or_else(|| panic!("{} is not created by the script", spec.name));
        let want = if spec.partitions == P {
            "$PARTITIONS".to_string()
        } else {
            spec.partitions.to_string()
        };
        assert_eq!(partitions, &want, "{}: partitions", spec.name);
        let want_compacted = spec
            .config
            .iter()
            .any(|(k, v)| k == "cleanup.policy" && v == "compact");
        assert_eq!(*compacted, want_compacted, "{}: compaction", spec.name);
    }
    let names: BTreeSet<&str> = expected.iter().map(|s| s.name.as_str()).collect();
    let extra: Vec<&String> = scripted
        .keys()
        .filter(|n| !names.contains(n.as_str()) && !n.starts_with('$'))
        .collect();
    assert!(
        extra.is_empty(),
        "the script creates topics no service uses: {extra:?}"
    );
    // The leaderboard is compacted too (the services' spec says so), and the events
    // topic's partition count bounds the counter's scaling.
    assert!(scripted[&config.topics.leaderboard].1);
}

#[test]
fn every_alert_rule_has_its_runbook_section() {
    let operations = std::fs::read_to_string(root().join("docs").join("OPERATIONS.md")).unwrap();
    // GitHub's anchor of a heading: lower case, spaces to dashes, other punctuation dropped.
    let anchors: BTreeSet<String> = operations
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let mut rules = 0;
    for path in files(
        &deploy().join("prometheus").join("rules"),
        &[".yml", ".yaml"],
    ) {
        for doc in yaml_documents(&path) {
            for group in doc["groups"].as_sequence().unwrap() {
                for rule in group["rules"].as_sequence().unwrap() {
                    let Some(name) = rule.get("alert").and_then(|a| a.as_str()) else {
                        continue;
                    };
                    let runbook = rule["annotations"]["runbook"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{name}: no runbook annotation"));
                    let anchor = runbook
                        .strip_prefix("docs/OPERATIONS.md#")
                        .unwrap_or_else(|| {
                            panic!("{name}: runbook {runbook} is not in docs/OPERATIONS.md")
                        });
                    assert!(
                        anchors.contains(anchor),
                        "{name}: no section #{anchor} in docs/OPERATIONS.md"
                    );
                    assert!(
                        rule["annotations"]["summary"].as_str().is_some()
                            && rule["annotations"]["description"].as_str().is_some(),
                        "{name}: needs a summary and a description"
                    );
                    rules += 1;
                }
            }
        }
    }
    assert!(rules >= 5, "{rules} alert rules");
}

/// The compose stack, the local broker of the tests and demo (scripts/kafka.sh) and the
/// benchmarks run one Kafka version: the image tag and the pinned Maven artifact agree.
#[test]
fn compose_and_the_local_broker_pin_the_same_kafka_version() {
    let pom = std::fs::read_to_string(root().join("scripts/kafka/pom.xml")).unwrap();
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .expect("scripts/kafka/pom.xml pins <kafka.version>");
    assert!(
        version.starts_with("4."),
        "Kafka {version}: the tests need 4.x (KIP-848)"
    );
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let images: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: apache/kafka:"))
        .collect();
    assert!(
        !images.is_empty(),
        "docker-compose.yml runs no apache/kafka image"
    );
    for tag in images {
        assert_eq!(
            tag, version,
            "docker-compose.yml's apache/kafka tag against scripts/kafka/pom.xml"
        );
    }
}

/// `trendwatch run` with the configuration docker-compose.yml mounts (only the broker's
/// address and the metrics listener changed, as the compose file's network and ports
/// would) works against the Apache Kafka version compose runs: topics created as the
/// stack creates them (12 partitions), a stream consumed, alerts written, ready.
#[test]
fn the_stack_configuration_runs_against_the_local_kafka() {
    let _one_at_a_time = serial();
    let bootstrap = trendwatch_tests::bootstrap();
    let config = deploy().join("config").join("trendwatch.toml");
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(trendwatch_bin())
        .args(["topics", "create", "--partitions", "12", "--config"])
        .arg(&config)
        .args(["--bootstrap-servers", bootstrap])
        .status()
        .unwrap();
    assert!(status.success(), "trendwatch topics create failed");
    let port = trendwatch_tests::free_port();
    let log = dir.path().join("counter.log");
    let child = std::process::Command::new(trendwatch_bin())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--bootstrap-servers", bootstrap])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let counter = trendwatch_tests::CounterProcess::adopt("stack-counter", child, port, log);
    let mut s = Scenario::configured_on(bootstrap, "stack", 12);
    s.config = Config::load(Some(&config), Vec::new()).unwrap();
    s.config
        .kafka
        .insert("bootstrap.servers".into(), bootstrap.into());
    let records = encode(&workload(29, 20_000));
    s.publish_raw(&records, None);
    let total = records.len() as f64;
    counter.wait_for("the stream counted", Duration::from_secs(120), |c| {
        c.metrics()
            .sum(trendwatch_runtime::telemetry::RECORDS_CONSUMED, &[])
            >= total
    });
    counter.wait_for("ready", Duration::from_secs(60), |c| {
        c.get("/readyz").is_some()
    });
    let alerts = s.alerts(Duration::from_secs(3));
    let metrics = counter.metrics();
    counter.stop();
    assert!(!alerts.is_empty(), "no alert on {}", s.config.topics.alerts);
    assert_eq!(
        metrics.sum(trendwatch_runtime::telemetry::ASSIGNED_PARTITIONS, &[]),
        12.0
    );
    eprintln!(
        "the stack's configuration on Apache Kafka: {total} records counted over 12 partitions, {} alerts",
        alerts.len()
    );
}
