//! The observability files in config/: the Prometheus config, the alert rules and their unit
//! tests (checked with promtool), and the Grafana dashboard, whose every query and every alert
//! expression must name only metrics, labels and label values that a real backupfs exports.
//! The last test runs a real Prometheus against a real stack and sees an alert fire.
//!
//! promtool and prometheus come from Debian's `prometheus` package (scripts/test.sh installs
//! it); `BACKUPFS_TEST_PROMTOOL` and `BACKUPFS_TEST_PROMETHEUS` override their paths.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{eicar, free_port, wait_for, Stack};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn prometheus_dir() -> PathBuf {
    repo().join("config/prometheus")
}

fn dashboard_path() -> PathBuf {
    repo().join("config/grafana/backupfs-dashboard.json")
}

fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// Runs promtool in the repository and returns its output; panics if it fails.
fn promtool(args: &[&str]) -> String {
    let bin = tool("BACKUPFS_TEST_PROMTOOL", "/usr/bin/promtool");
    let out = Command::new(&bin)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} ({e}); install Debian's prometheus package"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

// ---------------------------------------------------------------------------------------
// alerts.yml and alerts_test.yml, read line by line (no YAML parser among the dependencies).

#[derive(Debug, Default)]
struct Rule {
    name: String,
    expr: String,
    severity: String,
    summary: String,
    description: String,
}

/// The value after `key:` on a trimmed line, unquoted; `None` if the line is another key.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.strip_prefix(':')?.trim();
    let unquoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(rest);
    Some(unquoted)
}

fn alert_rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(prometheus_dir().join("alerts.yml")).unwrap();
    let mut rules: Vec<Rule> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            rules.push(Rule {
                name: name.trim().to_string(),
                ..Rule::default()
            });
            continue;
        }
        if let Some(expr) = value_of(line, "expr") {
            let rule = rules
                .last_mut()
                .unwrap_or_else(|| panic!("expr outside an alert rule: {line}"));
            assert!(
                !expr.is_empty() && !expr.starts_with('|') && !expr.starts_with('>'),
                "{}: keep each expr on one line, so that this test can read it",
                rule.name
            );
            rule.expr = expr.to_string();
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        if let Some(v) = value_of(line, "severity") {
            rule.severity = v.to_string();
        } else if let Some(v) = value_of(line, "summary") {
            rule.summary = v.to_string();
        } else if let Some(v) = value_of(line, "description") {
            rule.description = v.to_string();
        }
    }
    assert!(!rules.is_empty(), "no alert rules found in alerts.yml");
    rules
}

/// For each alert name in alerts_test.yml: (cases where it must fire, with labels and
/// annotations; cases where it must not fire).
fn rule_test_cases() -> HashMap<String, (usize, usize)> {
    let text = std::fs::read_to_string(prometheus_dir().join("alerts_test.yml")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut cases: HashMap<String, (usize, usize)> = HashMap::new();
    let mut current: Option<String> = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = value_of(line, "alertname") {
            current = Some(name.to_string());
            continue;
        }
        let Some(expected) = value_of(line, "exp_alerts") else {
            continue;
        };
        let name = current
            .take()
            .unwrap_or_else(|| panic!("exp_alerts without an alertname at line {}", i + 1));
        let entry = cases.entry(name.clone()).or_default();
        if expected == "[]" {
            entry.1 += 1;
            continue;
        }
        assert!(
            expected.is_empty(),
            "{name}: unexpected exp_alerts value {expected}"
        );
        // The expected alerts run until the next case or test group.
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.starts_with("- eval_time:") && !l.starts_with("- interval:"))
            .copied()
            .collect();
        for key in [
            "- exp_labels:",
            "severity:",
            "exp_annotations:",
            "summary:",
            "description:",
        ] {
            assert!(
                block.iter().any(|l| l.starts_with(key)),
                "{name}: a firing case at line {} has no `{key}`",
                i + 1
            );
        }
        entry.0 += 1;
    }
    cases
}

#[test]
fn promtool_accepts_the_config_the_rules_and_the_rule_tests() {
    let rules = alert_rules();
    let found = format!("SUCCESS: {} rules found", rules.len());

    let config = promtool(&["check", "config", "config/prometheus/prometheus.yml"]);
    assert!(config.contains("SUCCESS: 1 rule files found"), "{config}");
    assert!(
        config.contains("Checking config/prometheus/alerts.yml") && config.contains(&found),
        "prometheus.yml must load alerts.yml:\n{config}"
    );

    let checked = promtool(&["check", "rules", "config/prometheus/alerts.yml"]);
    assert!(checked.contains(&found), "{checked}");

    let tested = promtool(&["test", "rules", "config/prometheus/alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every rule says how bad it is and what to do, and is tested both ways.
    let cases = rule_test_cases();
    let mut names = BTreeSet::new();
    for rule in &rules {
        assert!(names.insert(&rule.name), "{} is defined twice", rule.name);
        assert!(!rule.expr.is_empty(), "{} has no expr", rule.name);
        assert!(
            ["warning", "critical"].contains(&rule.severity.as_str()),
            "{}: severity must be warning or critical, not {:?}",
            rule.name,
            rule.severity
        );
        assert!(
            rule.summary.len() > 10,
            "{} needs a summary annotation",
            rule.name
        );
        assert!(
            rule.description.len() > 40,
            "{} needs a description annotation",
            rule.name
        );
        let (firing, quiet) = cases.get(&rule.name).copied().unwrap_or_default();
        assert!(
            firing > 0,
            "{}: alerts_test.yml has no case where it fires",
            rule.name
        );
        assert!(
            quiet > 0,
            "{}: alerts_test.yml has no case where it must not fire",
            rule.name
        );
    }
    for name in cases.keys() {
        assert!(
            names.contains(name),
            "alerts_test.yml tests {name}, which alerts.yml does not define"
        );
    }

    // The job the rules select is the job the example config scrapes.
    let config_text = std::fs::read_to_string(prometheus_dir().join("prometheus.yml")).unwrap();
    let jobs: Vec<&str> = config_text
        .lines()
        .filter_map(|l| value_of(l.trim().trim_start_matches("- "), "job_name"))
        .collect();
    for rule in &rules {
        for selector in parse_promql(&rule.expr).selectors {
            for m in selector.matchers.iter().filter(|m| m.label == "job") {
                assert!(
                    jobs.contains(&m.value.as_str()),
                    "{} selects job {:?}, but prometheus.yml scrapes {jobs:?}",
                    rule.name,
                    m.value
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A small reader for the part of PromQL the dashboard and the rules use.

#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

#[derive(Debug)]
struct Selector {
    name: String,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Default)]
struct Query {
    selectors: Vec<Selector>,
    /// Labels named in `by (...)` and `without (...)`.
    grouping: Vec<String>,
}

/// PromQL functions and aggregations these files may call; anything else is a typo.
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "avg",
    "avg_over_time",
    "changes",
    "clamp_max",
    "clamp_min",
    "count",
    "delta",
    "deriv",
    "histogram_quantile",
    "increase",
    "irate",
    "label_replace",
    "last_over_time",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "predict_linear",
    "quantile",
    "rate",
    "resets",
    "round",
    "scalar",
    "sum",
    "sum_over_time",
    "time",
    "topk",
    "vector",
];

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn read_ident(chars: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < chars.len() && is_ident_char(chars[i]) {
        i += 1;
    }
    (chars[start..i].iter().collect(), i)
}

/// Reads a quoted string starting at `chars[i]`; returns its value and the index after it.
fn read_string(chars: &[char], mut i: usize) -> (String, usize) {
    let quote = chars[i];
    i += 1;
    let mut value = String::new();
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' && i + 1 < chars.len() {
            i += 1;
            value.push(match chars[i] {
                'n' => '\n',
                c => c,
            });
        } else {
            value.push(chars[i]);
        }
        i += 1;
    }
    assert!(
        i < chars.len(),
        "unterminated string in {:?}",
        String::from_iter(chars)
    );
    (value, i + 1)
}

/// Reads `{label op "value", ...}` starting at the `{`; returns the matchers and the index
/// after the `}`.
fn read_matchers(chars: &[char], mut i: usize) -> (Vec<Matcher>, usize) {
    let text = String::from_iter(chars);
    assert_eq!(chars[i], '{');
    i += 1;
    let mut matchers = Vec::new();
    loop {
        i = skip_ws(chars, i);
        match chars.get(i) {
            Some('}') => return (matchers, i + 1),
            Some(',') => {
                i += 1;
                continue;
            }
            Some(&c) if is_ident_start(c) => {}
            other => panic!("unexpected {other:?} in the label matchers of {text}"),
        }
        let (label, next) = read_ident(chars, i);
        i = skip_ws(chars, next);
        let op: String = match (chars.get(i), chars.get(i + 1)) {
            (Some('='), Some('~')) | (Some('!'), Some('~')) | (Some('!'), Some('=')) => {
                chars[i..i + 2].iter().collect()
            }
            (Some('='), _) => "=".to_string(),
            _ => panic!("no operator after label {label} in {text}"),
        };
        i = skip_ws(chars, i + op.len());
        assert!(
            matches!(chars.get(i), Some('"' | '\'' | '`')),
            "label {label} has no quoted value in {text}"
        );
        let (value, next) = read_string(chars, i);
        i = next;
        matchers.push(Matcher { label, op, value });
    }
}

/// Reads `(a, b, ...)` starting at the `(`; returns the names and the index after the `)`.
fn read_label_list(chars: &[char], i: usize) -> (Vec<String>, usize) {
    let end = (i..chars.len())
        .find(|&j| chars[j] == ')')
        .unwrap_or_else(|| panic!("unclosed label list in {}", String::from_iter(chars)));
    let inner: String = chars[i + 1..end].iter().collect();
    let labels = inner
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    (labels, end + 1)
}

/// Every metric selector and grouping label in `expr`. Grafana variables (`$job`,
/// `$__rate_interval`) may appear in label values and ranges.
fn parse_promql(expr: &str) -> Query {
    let chars: Vec<char> = expr.chars().collect();
    let mut query = Query::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if matches!(c, '"' | '\'' | '`') {
            i = read_string(&chars, i).1;
        } else if c == '[' {
            // A range or subquery: durations and variables only.
            i = (i..chars.len())
                .find(|&j| chars[j] == ']')
                .map_or(chars.len(), |j| j + 1);
        } else if c == '{' {
            panic!("a selector without a metric name in {expr}");
        } else if c == '$' {
            i = read_ident(&chars, i + 1).1;
        } else if c.is_ascii_digit() || c == '.' {
            // A number, or a duration after `offset`.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let (word, next) = read_ident(&chars, i);
            i = next;
            let after = skip_ws(&chars, i);
            // `sum by (x) (...)`: an aggregation with its grouping first.
            let grouped_first = matches!(read_ident(&chars, after).0.as_str(), "by" | "without");
            let called = chars.get(after) == Some(&'(') || grouped_first;
            match word.as_str() {
                "by" | "without" => {
                    assert!(called, "`{word}` without a label list in {expr}");
                    let (labels, end) = read_label_list(&chars, after);
                    query.grouping.extend(labels);
                    i = end;
                }
                "on" | "ignoring" | "group_left" | "group_right" if called => {
                    i = read_label_list(&chars, after).1;
                }
                w if KEYWORDS.contains(&w) => {}
                w if called => {
                    assert!(FUNCTIONS.contains(&w), "unknown function {w}() in {expr}");
                }
                _ => {
                    let matchers = if chars.get(after) == Some(&'{') {
                        let (m, end) = read_matchers(&chars, after);
                        i = end;
                        m
                    } else {
                        Vec::new()
                    };
                    query.selectors.push(Selector {
                        name: word,
                        matchers,
                    });
                }
            }
        } else {
            // Operators, parentheses, commas.
            i += 1;
        }
    }
    query
}

/// Every `backupfs_*` and `process_*` word in `text`: a cross-check of the reader above.
fn prefixed_names(text: &str) -> BTreeSet<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        if is_ident_char(chars[i]) {
            let (word, next) = read_ident(&chars, i);
            if word.starts_with("backupfs_") || word.starts_with("process_") {
                names.insert(word);
            }
            i = next;
        } else {
            i += 1;
        }
    }
    names
}

// ---------------------------------------------------------------------------------------
// The scrape, and checking queries against it.

/// Sample name -> the label sets it was exported with.
struct Scrape(HashMap<String, Vec<BTreeMap<String, String>>>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples: HashMap<String, Vec<BTreeMap<String, String>>> = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let chars: Vec<char> = line.chars().collect();
            let (name, i) = read_ident(&chars, 0);
            assert!(!name.is_empty(), "odd sample line {line:?}");
            let labels = if chars.get(i) == Some(&'{') {
                read_matchers(&chars, i)
                    .0
                    .into_iter()
                    .map(|m| (m.label, m.value))
                    .collect()
            } else {
                BTreeMap::new()
            };
            samples.entry(name).or_default().push(labels);
        }
        Self(samples)
    }

    /// Whether some sample of `name` has `label`, with a value `ok` accepts.
    fn has_label(&self, name: &str, label: &str, ok: impl Fn(&str) -> bool) -> bool {
        self.0
            .get(name)
            .is_some_and(|sets| sets.iter().any(|s| s.get(label).is_some_and(|v| ok(v))))
    }
}

/// Labels Prometheus itself attaches to every scraped sample.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// Problems with `expr` against the real scrape: names, labels and label values that
/// backupfs does not export. `up` is Prometheus's own and always allowed.
fn check_expr(what: &str, expr: &str, scrape: &Scrape, errors: &mut Vec<String>) -> Vec<String> {
    let query = parse_promql(expr);
    let names: Vec<String> = query.selectors.iter().map(|s| s.name.clone()).collect();
    if names.is_empty() {
        errors.push(format!("{what}: no metric in {expr}"));
    }
    let parsed: BTreeSet<&String> = names.iter().collect();
    for word in prefixed_names(expr) {
        if !parsed.contains(&word) {
            errors.push(format!("{what}: {word} was not read as a metric in {expr}"));
        }
    }
    for selector in &query.selectors {
        let name = &selector.name;
        if name == "up" {
            continue;
        }
        if !scrape.0.contains_key(name) {
            errors.push(format!("{what}: backupfs exports no {name} ({expr})"));
            continue;
        }
        for m in &selector.matchers {
            if TARGET_LABELS.contains(&m.label.as_str()) {
                continue;
            }
            if !scrape.has_label(name, &m.label, |_| true) {
                errors.push(format!("{what}: {name} has no label {}", m.label));
                continue;
            }
            // Every value an equality or a plain alternation asks for must exist.
            let wanted: Vec<&str> = match m.op.as_str() {
                "=" => vec![m.value.as_str()],
                "=~" if m
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-|".contains(c)) =>
                {
                    m.value.split('|').collect()
                }
                _ => Vec::new(),
            };
            for value in wanted {
                if !scrape.has_label(name, &m.label, |v| v == value) {
                    errors.push(format!(
                        "{what}: {name} is never exported with {}=\"{value}\"",
                        m.label
                    ));
                }
            }
        }
    }
    for label in &query.grouping {
        let known = TARGET_LABELS.contains(&label.as_str())
            || (label == "le" && names.iter().any(|n| n.ends_with("_bucket")))
            || names.iter().any(|n| scrape.has_label(n, label, |_| true));
        if !known {
            errors.push(format!(
                "{what}: groups by {label}, which none of {names:?} has"
            ));
        }
    }
    names
}

struct Dashboard {
    json: Value,
    /// (panel title, expr) for every query target.
    targets: Vec<(String, String)>,
    /// (variable name, metric selector, label) for every `label_values` variable.
    variables: Vec<(String, String, String)>,
}

fn collect_targets(value: &Value, title: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
            if let Some(expr) = map.get("expr").and_then(Value::as_str) {
                out.push((title.to_string(), expr.to_string()));
            }
            for (key, v) in map {
                if key != "templating" {
                    collect_targets(v, title, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_targets(v, title, out)),
        _ => {}
    }
}

fn dashboard() -> Dashboard {
    let text = std::fs::read_to_string(dashboard_path()).unwrap();
    let json: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut targets = Vec::new();
    collect_targets(&json["panels"], "", &mut targets);
    let mut variables = Vec::new();
    for var in json["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap().to_string();
        let query = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name} has no query"));
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: expected label_values(...), got {query}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        variables.push((name, selector.trim().to_string(), label.trim().to_string()));
    }
    Dashboard {
        json,
        targets,
        variables,
    }
}

/// The metrics the dashboard must show, whatever else it shows.
const DASHBOARD_MUST_SHOW: &[&str] = &[
    "backupfs_files_total",
    "backupfs_stage_duration_seconds_bucket",
    "backupfs_file_duration_seconds_sum",
    "backupfs_file_duration_seconds_count",
    "backupfs_queue_depth",
    "backupfs_failed_jobs",
    "backupfs_catchup_running",
    "backupfs_catchup_files_total",
    "backupfs_clamd_up",
    "backupfs_destination_up",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "backupfs_read_bytes_total",
    "backupfs_uploaded_bytes_total",
    "backupfs_retries_total",
];

#[test]
fn dashboard_and_alerts_name_only_what_backupfs_exports() {
    // The structure Grafana needs, before starting anything.
    let dash = dashboard();
    let schema = dash.json["schemaVersion"].as_i64().unwrap_or(0);
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let vars: Vec<&Value> = dash.json["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["name"] == "datasource"),
        "the dashboard needs a `datasource` variable"
    );
    let mut ids = BTreeSet::new();
    for panel in dash.json["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "duplicate id at {title}"
        );
        assert!(
            panel["gridPos"]["w"].as_i64().is_some(),
            "{title} has no gridPos"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}"));
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert!(t["refId"].is_string(), "{title}: target without refId");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
        }
    }
    assert!(
        dash.targets.len() >= 15,
        "only {} queries",
        dash.targets.len()
    );

    // A real backupfs, after one file went all the way through.
    let stack = Stack::start();
    stack.put_file("observed.txt", b"one file, watched from the outside\n");
    let record = stack.wait_audit("observed.txt");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    let text = stack.metrics();
    assert!(
        text.lines()
            .any(|l| l == "backupfs_files_total{outcome=\"uploaded\"} 1"),
        "the upload is not counted:\n{text}"
    );
    let scrape = Scrape::parse(&text);

    let mut errors = Vec::new();
    let mut shown = BTreeSet::new();
    for (title, expr) in &dash.targets {
        shown.extend(check_expr(
            &format!("panel {title:?}"),
            expr,
            &scrape,
            &mut errors,
        ));
    }
    for (name, selector, label) in &dash.variables {
        let what = format!("variable {name}");
        for metric in check_expr(&what, selector, &scrape, &mut errors) {
            if !TARGET_LABELS.contains(&label.as_str())
                && !scrape.has_label(&metric, label, |_| true)
            {
                errors.push(format!("{what}: {metric} has no label {label}"));
            }
        }
    }
    for must in DASHBOARD_MUST_SHOW {
        if !shown.contains(*must) {
            errors.push(format!("the dashboard shows no {must}"));
        }
    }
    for rule in alert_rules() {
        check_expr(
            &format!("alert {}", rule.name),
            &rule.expr,
            &scrape,
            &mut errors,
        );
    }
    assert!(
        errors.is_empty(),
        "{}\n\nscrape:\n{text}",
        errors.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// A real Prometheus scraping a real stack.

/// A Prometheus server we started, stopped (SIGTERM, then SIGKILL) when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port with `config` (YAML text), retrying on a
    /// new port if another process took the one we picked.
    fn start(config: &str) -> Self {
        let bin = tool("BACKUPFS_TEST_PROMETHEUS", "/usr/bin/prometheus");
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("backupfs-prometheus")
                .tempdir()
                .unwrap();
            let config_path = dir.path().join("prometheus.yml");
            std::fs::write(&config_path, config).unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let child = Command::new(&bin)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin} ({e})"));
            let mut server = Self { child, port, dir };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if server
                    .get("/-/ready")
                    .is_some_and(|(status, _)| status == 200)
                {
                    return server;
                }
                // It exits at once when the port was taken meanwhile.
                if server.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("prometheus did not start on port {port}:\n{}", server.log());
            // Dropping it stops it.
        }
        panic!("prometheus did not start");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// A plain HTTP/1.0 GET (the server closes the connection after the body).
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    /// GETs an API path and returns its `data`; panics on an API error.
    fn api(&self, path: &str) -> Option<Value> {
        let (status, body) = self.get(path)?;
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: {status} {e}:\n{body}"));
        assert_eq!(json["status"], "success", "GET {path}: {status}\n{body}");
        Some(json["data"].clone())
    }

    /// The result of an instant query.
    fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql)))?;
        data["result"].as_array().cloned()
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the one series in a query result, if there is exactly one.
fn single_value(result: &[Value]) -> Option<String> {
    match result {
        [one] => one["value"][1].as_str().map(str::to_string),
        _ => None,
    }
}

#[test]
fn real_prometheus_scrapes_backupfs_evaluates_the_rules_and_runs_the_dashboard() {
    let stack = Stack::start();
    let instance = format!("127.0.0.1:{}", stack.metrics_port);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: backupfs\n    static_configs:\n      - targets: [\"{instance}\"]\n",
        rules = prometheus_dir().join("alerts.yml").display(),
    );
    let prom = Prometheus::start(&config);
    let limit = Duration::from_secs(60);

    // Prometheus must see the counters at 0 before the files arrive, as it would in
    // production, or increase() has nothing to compare with.
    wait_for("the first scrape of backupfs", limit, || {
        let result = prom.query("backupfs_files_total{job=\"backupfs\",outcome=\"infected\"}")?;
        (single_value(&result).as_deref() == Some("0")).then_some(())
    });

    stack.put_file("clean.txt", b"nothing to see here\n");
    stack.put_file("eicar.com", &eicar());
    assert_eq!(stack.wait_audit("clean.txt")["outcome"], "uploaded");
    assert_eq!(stack.wait_audit("eicar.com")["outcome"], "infected");

    for outcome in ["uploaded", "infected"] {
        let promql = format!("backupfs_files_total{{job=\"backupfs\",outcome=\"{outcome}\"}}");
        wait_for(&format!("Prometheus to see {promql} at 1"), limit, || {
            (single_value(&prom.query(&promql)?).as_deref() == Some("1")).then_some(())
        });
    }

    // Every rule evaluates without error against real data.
    let rules = alert_rules();
    wait_for("every rule to be evaluated", limit, || {
        let data = prom.api("/api/v1/rules")?;
        let loaded: Vec<&Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        for rule in &loaded {
            assert_ne!(rule["health"], "err", "{rule}");
        }
        (loaded.len() == rules.len() && loaded.iter().all(|r| r["health"] == "ok")).then_some(())
    });

    // The infected file fires its alert, with the annotations rendered for this instance;
    // nothing else fires on a healthy stack.
    let firing = wait_for("BackupfsInfectedFile to fire", limit, || {
        let data = prom.api("/api/v1/alerts")?;
        let alerts = data["alerts"].as_array()?.clone();
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "BackupfsInfectedFile" && a["state"] == "firing")
            .then_some(alerts)
    });
    for alert in &firing {
        let name = alert["labels"]["alertname"].as_str().unwrap_or("");
        if name == "BackupfsInfectedFile" {
            assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
            assert_eq!(alert["labels"]["outcome"], "infected", "{alert}");
            assert_eq!(alert["labels"]["instance"], instance.as_str(), "{alert}");
            assert_eq!(
                alert["annotations"]["summary"],
                format!("backupfs on {instance} quarantined an infected file"),
                "{alert}"
            );
        } else {
            assert_ne!(alert["state"], "firing", "a healthy stack fires {alert}");
        }
    }

    // Every dashboard query, with Grafana's variables filled in, returns data.
    let dash = dashboard();
    let fill = |expr: &str| {
        expr.replace("$__rate_interval", "1m")
            .replace("$job", "backupfs")
            .replace("$instance", ".*")
    };
    for (title, expr) in &dash.targets {
        let promql = fill(expr);
        wait_for(
            &format!("data for panel {title:?}: {promql}"),
            limit,
            || prom.query(&promql).filter(|r| !r.is_empty()),
        );
    }
    for (name, selector, label) in &dash.variables {
        let result = prom.query(&fill(selector)).unwrap_or_default();
        let values: BTreeSet<&str> = result
            .iter()
            .filter_map(|s| s["metric"][label.as_str()].as_str())
            .collect();
        let expected = if label == "job" {
            "backupfs"
        } else {
            instance.as_str()
        };
        assert!(
            values.contains(expected),
            "variable {name} would offer {values:?}, not {expected}"
        );
    }
}
