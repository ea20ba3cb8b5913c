//! Analysis reports as people and pipelines see them: fixture analyses (promoted,
//! rolled back, inconclusive, many metrics) built from real judgements of the recorded
//! scenarios, rendered to JSON (compared with committed snapshots in
//! `fixtures/report/`).
//!
//! Set `UPDATE_SNAPSHOTS=1` to rewrite a snapshot after an intended change, and review
//! the diff.

use std::path::Path;

use canary::domain::look_series::LookSeries;
use canary::domain::plan::TriggerAction;
use canary::domain::{Observations, Percentage, Profile, Verdict};
use canary::judge::triggers::TriggerCheck;
use canary::judge::{Judgement, judge};
use canary::report::analysis::{AnalysisReport, ChartData, RawSeries};
use canary::report::html;
use canary::scheduler::{Decision, Look};
use canary::sources::recorded;
use canary::store::{
    ActuationRecord, ActuationState, Analysis, AnalysisState, AuditAction, AuditEntry, LookRecord,
};
use uuid::Uuid;

use crate::helpers::root;

const PROFILE: &str = "analysis-profiles/web-service.toml";

pub fn profile() -> Profile {
    let text = std::fs::read_to_string(root().join(PROFILE)).unwrap();
    Profile::parse(&text, PROFILE).unwrap()
}

pub fn sides(scenario: &str) -> (Observations, Observations) {
    let directory = root().join("fixtures/scenarios").join(scenario);
    let read = |side: &str| {
        let csv = directory.join(format!("{side}.csv"));
        let path = if csv.exists() {
            csv
        } else {
            directory.join(format!("{side}.json"))
        };
        recorded::read_file(&path).unwrap()
    };
    (read("baseline"), read("canary"))
}

pub fn judged(scenario: &str) -> Judgement {
    let (baseline, canary) = sides(scenario);
    judge(&profile(), &baseline, &canary)
}

fn look(
    id: Uuid,
    number: u64,
    stage: usize,
    traffic: f64,
    decision: Decision,
    judgement: Judgement,
) -> LookRecord {
    look_with_triggers(id, number, stage, traffic, decision, judgement, Vec::new())
}

/// The two web-service triggers as a look checked them; `fired` makes the error-rate
/// one fire.
fn web_service_triggers(fired: bool) -> Vec<TriggerCheck> {
    let clear = |name: &str, metric: &str| TriggerCheck {
        name: name.to_owned(),
        metric: metric.to_owned(),
        met: false,
        action: TriggerAction::Rollback,
        value: None,
        limit: None,
        reason: "no canary point above the limit since the previous look".to_owned(),
    };
    let error_rate = if fired {
        TriggerCheck {
            met: true,
            value: Some(0.031),
            limit: Some(0.02),
            reason: "canary above 0.02 for 120 s of the required 2m".to_owned(),
            ..clear("error rate above 2 % for 2 minutes", "error_rate")
        }
    } else {
        clear("error rate above 2 % for 2 minutes", "error_rate")
    };
    vec![
        error_rate,
        clear("p95 latency above 500 ms for 1 minute", "latency_p95"),
    ]
}

/// A stored look as a worker records it, but without the `series` a worker keeps
/// since the charts needed them: these fixtures are older looks, which must still
/// render (the served test in `serve.rs` covers looks with series).
fn look_with_triggers(
    id: Uuid,
    number: u64,
    stage: usize,
    traffic: f64,
    decision: Decision,
    judgement: Judgement,
    triggers: Vec<TriggerCheck>,
) -> LookRecord {
    let at = 1_800_000_000.0 + 300.0 * number as f64;
    let verdict: Verdict = judgement.verdict;
    let record = Look {
        look: number,
        at,
        stage_index: stage,
        stage: format!("stage-{}", stage + 1),
        traffic: Percentage::parse(traffic).unwrap(),
        confidence_level: judgement.confidence_level,
        verdict,
        reasons: judgement.reasons.clone(),
        decision: decision.clone(),
        judgement,
        triggers,
        series: LookSeries::default(),
    };
    LookRecord {
        analysis_id: id,
        look: number,
        at,
        stage_index: stage,
        verdict,
        decision: record.decision.name().to_owned(),
        body: record,
    }
}

/// A stored analysis with its looks, flag changes and audit log.
pub struct Fixture {
    pub analysis: Analysis,
    pub looks: Vec<LookRecord>,
    pub actuations: Vec<ActuationRecord>,
    pub audit: Vec<AuditEntry>,
}

impl Fixture {
    pub fn report(&self) -> AnalysisReport {
        AnalysisReport::from_analysis(&self.analysis, &self.looks, &self.actuations, &self.audit)
    }
}

fn analysis(number: u128, flag: &str, state: AnalysisState, reasons: Vec<String>) -> Analysis {
    Analysis {
        id: Uuid::from_u128(number),
        profile_name: "web-service".to_owned(),
        profile_text: std::fs::read_to_string(root().join(PROFILE)).unwrap(),
        flag: flag.to_owned(),
        source: "prometheus".to_owned(),
        actuator: "flagd".to_owned(),
        baseline_scope: r#"track="baseline""#.to_owned(),
        canary_scope: r#"track="canary""#.to_owned(),
        dry_run: false,
        start_at: None,
        state,
        current_stage: Some(1),
        traffic: Some(0.0),
        latest_verdict: None,
        reasons,
        runner_state: canary::store::Snapshot::None,
        next_look_at: None,
        version: 7,
        lease_owner: None,
        lease_expires_at: None,
        created_at: 1_800_000_000.0,
        updated_at: 1_800_000_900.0,
        requested_action: None,
        owner: None,
        adopt: false,
        submit_key: None,
    }
}

fn actuation(id: Uuid, at: f64, action: &str, target: f64) -> ActuationRecord {
    ActuationRecord {
        analysis_id: id,
        idempotency_key: format!("{id}:{at}:{action}:{target}"),
        action: action.to_owned(),
        target,
        state: ActuationState::Applied,
        detail: Some(format!("flag at {target}%")),
        at,
        completed_at: Some(at + 1.0),
    }
}

/// Healthy at 10%, healthy at 50%, an error spike at 50%: rolled back by the engine,
/// after a person paused and resumed it.
pub fn rolled_back(flag: &str) -> Fixture {
    let id = Uuid::from_u128(0xB0);
    let spike = judged("error-spike");
    let reasons = spike.reasons.clone();
    let looks = vec![
        look(
            id,
            1,
            0,
            10.0,
            Decision::Advance {
                to: Percentage::parse(50.0).unwrap(),
            },
            judged("healthy"),
        ),
        look_with_triggers(
            id,
            2,
            1,
            50.0,
            Decision::Continue,
            judged("healthy"),
            web_service_triggers(false),
        ),
        look_with_triggers(
            id,
            3,
            1,
            50.0,
            Decision::Rollback,
            spike,
            web_service_triggers(true),
        ),
    ];
    let actuations = vec![
        actuation(id, 1_800_000_000.0, "set_rollout", 10.0),
        actuation(id, 1_800_000_300.0, "set_rollout", 50.0),
        actuation(id, 1_800_000_900.0, "kill", 0.0),
    ];
    let audit = vec![
        AuditEntry {
            analysis_id: id,
            actor: "alice@example.com".to_owned(),
            action: AuditAction::Pause,
            reason: "checking the dashboards".to_owned(),
            from_state: AnalysisState::Running,
            to_state: AnalysisState::Paused,
            at: 1_800_000_400.0,
        },
        AuditEntry {
            analysis_id: id,
            actor: "alice@example.com".to_owned(),
            action: AuditAction::Resume,
            reason: "dashboards look fine".to_owned(),
            from_state: AnalysisState::Paused,
            to_state: AnalysisState::Running,
            at: 1_800_000_500.0,
        },
    ];
    let mut analysis = analysis(0xB0, flag, AnalysisState::RolledBack, reasons);
    analysis.latest_verdict = Some(canary::domain::Verdict::Rollback);
    Fixture {
        analysis,
        looks,
        actuations,
        audit,
    }
}

/// Healthy at every stage: promoted.
pub fn promoted() -> Fixture {
    let id = Uuid::from_u128(0xA0);
    let healthy = judged("healthy");
    let reasons = healthy.reasons.clone();
    let looks = vec![
        look(
            id,
            1,
            0,
            10.0,
            Decision::Advance {
                to: Percentage::parse(50.0).unwrap(),
            },
            judged("healthy"),
        ),
        look(id, 2, 1, 50.0, Decision::Promote, healthy),
    ];
    let actuations = vec![
        actuation(id, 1_800_000_000.0, "set_rollout", 10.0),
        actuation(id, 1_800_000_300.0, "set_rollout", 50.0),
        actuation(id, 1_800_000_600.0, "set_rollout", 100.0),
    ];
    let mut analysis = analysis(0xA0, "checkout-v2", AnalysisState::Promoted, reasons);
    analysis.traffic = Some(100.0);
    analysis.latest_verdict = Some(canary::domain::Verdict::Promote);
    Fixture {
        analysis,
        looks,
        actuations,
        audit: Vec::new(),
    }
}

/// Too few samples: held, then left for a person.
pub fn inconclusive() -> Fixture {
    let id = Uuid::from_u128(0xC0);
    let few = judged("too-few-samples");
    let reasons = few.reasons.clone();
    let looks = vec![look(id, 1, 0, 10.0, Decision::AwaitReview, few)];
    let actuations = vec![actuation(id, 1_800_000_000.0, "set_rollout", 10.0)];
    let mut analysis = analysis(0xC0, "search-v3", AnalysisState::AwaitingReview, reasons);
    analysis.traffic = Some(10.0);
    analysis.latest_verdict = Some(canary::domain::Verdict::Hold);
    Fixture {
        analysis,
        looks,
        actuations,
        audit: Vec::new(),
    }
}

fn snapshot(name: &str, actual: &str) {
    let path = root().join("fixtures/report").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1 once)", path.display()));
    assert!(
        expected == actual,
        "{} differs from the rendered report; if the change is intended, rerun with \
         UPDATE_SNAPSHOTS=1 and review the diff.\n--- rendered ---\n{actual}",
        path.display()
    );
}

fn exists(path: &Path) -> bool {
    path.exists()
}

#[test]
fn the_json_report_of_a_rolled_back_analysis_matches_its_snapshot() {
    let report = rolled_back("checkout-v2").report();
    assert_eq!(report.report_schema_version, 1);
    assert_eq!(
        report.banner.verdict,
        Some(canary::domain::Verdict::Rollback)
    );
    assert!(exists(&root().join("docs/report-schema.md")));
    snapshot("rolled-back.json", &report.to_json());
    // The JSON reads back into the same report.
    let back: AnalysisReport = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn the_json_report_of_canary_analyze_matches_its_snapshot() {
    let report =
        AnalysisReport::from_judgement(&judged("error-spike")).with_relative_limits(&profile());
    snapshot("analyze-error-spike.json", &report.to_json());
}

#[test]
fn inconclusive_metrics_say_what_was_missing_in_the_report() {
    let report = inconclusive().report();
    let held: Vec<_> = report
        .metrics
        .iter()
        .filter(|m| m.classification == "inconclusive")
        .collect();
    assert!(!held.is_empty(), "{:#?}", report.metrics);
    assert!(!report.banner.deciding_metrics.is_empty());
    for metric in held {
        assert!(metric.reason.contains("of"), "{}", metric.reason);
    }
    let promoted = promoted().report();
    assert_eq!(
        promoted.banner.verdict,
        Some(canary::domain::Verdict::Promote)
    );
    assert!(promoted.banner.headline.contains("Promoted"));
}

/// Where rendered reports are written for people to open (kept after the run).
pub fn output_directory() -> std::path::PathBuf {
    let directory = root().join("target/report-fixtures");
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// The `canary analyze` report of a scenario, with its raw series for the charts.
fn analyze_html(scenario: &str) -> String {
    let (baseline, canary) = sides(scenario);
    let judgement = judge(&profile(), &baseline, &canary);
    let report = AnalysisReport::from_judgement(&judgement);
    html::render(&report, &ChartData::from_observations(&baseline, &canary))
}

/// 50 metrics, each with 10,000-point series on both sides.
fn many_metrics() -> (AnalysisReport, ChartData) {
    let mut report = AnalysisReport::from_judgement(&judged("latency-regression"));
    let template = report.metrics[0].clone();
    report.metrics = (0..50)
        .map(|index| {
            let mut metric = template.clone();
            metric.name = format!("latency_{index:02}");
            metric
        })
        .collect();
    let series = report
        .metrics
        .iter()
        .enumerate()
        .map(|(index, metric)| {
            let wave = |offset: f64| -> Vec<(f64, f64)> {
                (0..10_000)
                    .map(|i| {
                        let t = i as f64;
                        (
                            t,
                            100.0
                                + offset
                                + 10.0 * (t / 300.0 + index as f64).sin()
                                + (i % 17) as f64,
                        )
                    })
                    .collect()
            };
            RawSeries {
                name: metric.name.clone(),
                baseline: wave(0.0),
                canary: wave(5.0),
                ..RawSeries::default()
            }
        })
        .collect();
    (report, ChartData { series })
}

#[test]
fn the_html_report_escapes_every_user_controlled_string() {
    let hostile = "<script>alert(1)</script>";
    let mut fixture = rolled_back(hostile);
    fixture.audit[0].actor = format!("{hostile}@example.com");
    fixture.audit[0].reason = format!("\"quoted\" & {hostile}");
    let page = html::render(&fixture.report(), &ChartData::default());
    assert!(!page.contains("<script"), "a raw script tag got through");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("&quot;quoted&quot; &amp;"));
}

#[test]
fn the_html_report_is_self_contained() {
    for page in [
        analyze_html("error-spike"),
        html::render(&rolled_back("checkout-v2").report(), &ChartData::default()),
    ] {
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<svg"), "charts are inline SVG");
        for outside in [
            "<script",
            "<link",
            "src=",
            "href=",
            "@import",
            "url(",
            "@font-face",
        ] {
            assert!(
                !page.contains(outside),
                "the page reaches outside: {outside}"
            );
        }
        // The only URL is the SVG namespace, which is a name, not a fetch.
        let without_namespace = page.replace("http://www.w3.org/2000/svg", "");
        assert!(!without_namespace.contains("http://") && !without_namespace.contains("https://"));
    }
}

#[test]
fn fifty_metrics_with_ten_thousand_points_stay_a_readable_size() {
    let (report, charts) = many_metrics();
    let started = std::time::Instant::now();
    let page = html::render(&report, &charts);
    let elapsed = started.elapsed();
    println!(
        "50 metrics × 2 × 10,000 points: {} bytes in {elapsed:?}",
        page.len()
    );
    assert_eq!(page.matches("<tr class=\"metric\">").count(), 50);
    assert_eq!(
        page.matches("<section class=\"metric-charts\">").count(),
        50
    );
    // Each line is downsampled to at most MAX_POINTS points, so the page stays small
    // whatever the series' length.
    assert!(page.len() < 8_000_000, "{} bytes", page.len());
    std::fs::write(output_directory().join("many-metrics.html"), &page).unwrap();
}

#[tokio::test]
async fn the_api_serves_the_html_and_json_reports() {
    let app = crate::api::spawn_app().await;
    let id = app.submit().await;
    let url = |path: &str| format!("{}{path}", app.address);
    let response = app
        .http
        .get(url(&format!("/v1/analyses/{id}/report")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(response.headers().contains_key("content-security-policy"));
    let page = response.text().await.unwrap();
    assert!(
        page.contains("NO VERDICT YET") && page.contains("Pending"),
        "{page}"
    );
    assert!(page.contains(&id.to_string()));

    let response = app
        .http
        .get(url(&format!("/v1/analyses/{id}/report.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let report: AnalysisReport = response.json().await.unwrap();
    assert_eq!(report.report_schema_version, 1);
    assert_eq!(report.subject.analysis_id, Some(id.to_string()));
    assert_eq!(report.subject.state, "pending");

    let unknown = app
        .http
        .get(url(&format!("/v1/analyses/{}/report", Uuid::from_u128(7))))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    let malformed = app
        .http
        .get(url("/v1/analyses/not-a-uuid/report.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
}

#[test]
fn canary_analyze_and_canary_run_write_the_html_report() {
    let directory = tempfile::tempdir().unwrap();
    let analyze_report = directory.path().join("analyze.html");
    let run = crate::helpers::canary([
        "analyze",
        "--profile",
        PROFILE,
        "--baseline",
        "fixtures/scenarios/error-spike/baseline.csv",
        "--canary",
        "fixtures/scenarios/error-spike/canary.csv",
        "--report",
        analyze_report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let page = std::fs::read_to_string(&analyze_report).unwrap();
    assert!(page.contains("Verdict: ROLLBACK") && page.contains("error_rate"));
    assert!(page.contains("empirical CDF"), "raw series are charted");

    let run_report = directory.path().join("run.html");
    let run = crate::helpers::canary([
        "run",
        "--profile",
        PROFILE,
        "--source",
        "replay=fixtures/replay/latency-regression",
        "--flag",
        "checkout-<v2>",
        "--actuator",
        "log-only",
        "--speed",
        "100000",
        "--report",
        run_report.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&run_report)
        .unwrap_or_else(|e| panic!("{e}: {} {}", run.stdout, run.stderr));
    assert!(page.contains("checkout-&lt;v2&gt;"));
    assert!(
        page.contains("Timeline") && page.contains("look 1"),
        "{page}"
    );
    assert!(page.contains("<tr class=\"metric\">"));
    // The charts draw the looks' series (a point every 5 s, a look every 3 min), not
    // one point per look.
    let looks = page.matches("<td>look ").count();
    let (at, _) = page
        .match_indices("over time: ")
        .next()
        .expect("a time chart");
    let drawn: u64 = page[at..]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        !page.contains("at each look") && looks > 0 && drawn >= 20 * looks as u64,
        "{drawn} points over {looks} looks"
    );
    assert!(page.contains("class=\"trigger clear\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_report_fetches_the_html_and_prints_a_plain_summary() {
    let app = crate::api::spawn_app().await;
    let id = app.submit().await;
    let directory = tempfile::tempdir().unwrap();
    let out = directory.path().join("fetched.html");
    let args = vec![
        "report".to_owned(),
        id.to_string(),
        "--server".to_owned(),
        app.address.clone(),
        "--out".to_owned(),
        out.to_str().unwrap().to_owned(),
    ];
    let run = tokio::task::spawn_blocking(move || crate::helpers::canary(args))
        .await
        .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("VERDICT: NONE"), "{}", run.stdout);
    assert!(!run.stdout.contains('\x1b'), "no colour into a pipe");
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.contains(&id.to_string()));
}

/// Opens `page` in headless Chromium: its rendered DOM and a 1280×2000 screenshot.
/// `None` (with a notice) when Chromium is not installed.
pub fn open_in_chromium(page: &Path, screenshot: &Path) -> Option<String> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        println!(
            "NOTICE: /usr/bin/chromium is missing; skipping the browser checks (scripts/test.sh installs it)"
        );
        return None;
    }
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let url = format!("file://{}", page.display());
    let dom = std::process::Command::new(chromium)
        .args(&common)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = std::process::Command::new(chromium)
        .args(&common)
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1280,2000")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    Some(String::from_utf8(dom.stdout).unwrap())
}

/// The text a person reads: the DOM without its tags (scripts would show here too,
/// but the page has none).
pub fn visible_text(dom: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for character in dom.chars() {
        match character {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            other if !in_tag => text.push(other),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[test]
fn the_reports_render_in_a_browser_with_their_verdicts_and_metric_rows() {
    let directory = output_directory();
    let (many, many_charts) = many_metrics();
    let cases: Vec<(&str, AnalysisReport, ChartData, &str)> = vec![
        (
            "promoted",
            promoted().report(),
            ChartData::default(),
            "PROMOTE",
        ),
        (
            "rolled-back",
            rolled_back("checkout-v2").report(),
            ChartData::default(),
            "ROLLBACK",
        ),
        (
            "inconclusive",
            inconclusive().report(),
            ChartData::default(),
            "HOLD",
        ),
        ("many-metrics", many, many_charts, "ROLLBACK"),
    ];
    for (name, report, charts, verdict) in cases {
        let page = directory.join(format!("{name}.html"));
        let screenshot = directory.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&screenshot);
        std::fs::write(&page, html::render(&report, &charts)).unwrap();
        let Some(dom) = open_in_chromium(&page, &screenshot) else {
            return;
        };
        let text = visible_text(&dom);
        assert!(
            text.contains(&format!("Verdict: {verdict}")),
            "{name}: {text}"
        );
        for metric in &report.metrics {
            assert!(
                text.contains(&metric.name),
                "{name}: no row for {}",
                metric.name
            );
            assert!(
                text.contains(&metric.reason),
                "{name}: no reason for {}",
                metric.name
            );
        }
        assert_eq!(
            dom.matches("<tr class=\"metric\">").count(),
            report.metrics.len(),
            "{name}: one rendered row per metric"
        );
        if name == "rolled-back" {
            for seen in [
                "Timeline",
                "alice@example.com",
                "checking the dashboards",
                "kill",
                "look 3",
                "FIRED → rollback",
                "0.031 vs limit 0.02",
                "canary above 0.02 for 120 s of the required 2m",
                "p95 latency above 500 ms for 1 minute",
                "baseline rate ×1.5",
            ] {
                assert!(text.contains(seen), "{name}: the timeline shows {seen:?}");
            }
        }
        let png = std::fs::read(&screenshot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG"),
            "{name}: the screenshot is a PNG"
        );
        assert!(
            png.len() > 20_000,
            "{name}: the screenshot is blank ({} bytes)",
            png.len()
        );
        println!("{name}: {} and {}", page.display(), screenshot.display());
    }
}

/// Runs `canary ARGS...` (stderr dropped) with stdout on a pseudo-terminal, through
/// util-linux `script`; `None` (with a notice) when `script` is missing. `no_colour`
/// sets `NO_COLOR=1`.
fn canary_on_a_terminal(args: &[&str], no_colour: bool) -> Option<(i32, String)> {
    if !Path::new("/usr/bin/script").exists() {
        println!("NOTICE: /usr/bin/script is missing; skipping the terminal checks");
        return None;
    }
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_canary"))
        .chain(args.iter().copied())
        .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
        .collect();
    let mut command = std::process::Command::new("/usr/bin/script");
    command
        .args([
            "-q",
            "-e",
            "-c",
            &format!("{} 2>/dev/null", quoted.join(" ")),
            "/dev/null",
        ])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .env("TERM", "xterm");
    if no_colour {
        command.env("NO_COLOR", "1");
    } else {
        command.env_remove("NO_COLOR");
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8(output.stdout)
        .unwrap()
        .replace("\r\n", "\n");
    Some((output.status.code().unwrap(), stdout))
}

const ERROR_SPIKE: [&str; 7] = [
    "analyze",
    "--profile",
    PROFILE,
    "--baseline",
    "fixtures/scenarios/error-spike/baseline.csv",
    "--canary",
    "fixtures/scenarios/error-spike/canary.csv",
];

const REPLAYED_REGRESSION: [&str; 11] = [
    "run",
    "--profile",
    PROFILE,
    "--source",
    "replay=fixtures/replay/latency-regression",
    "--flag",
    "checkout-v2",
    "--actuator",
    "log-only",
    "--speed",
    "100000",
];

#[test]
fn a_terminal_gets_the_coloured_compact_summary_and_a_pipe_the_unchanged_table() {
    // Piped: the plain table scripts and CI logs read, as before.
    let piped = crate::helpers::canary(ERROR_SPIKE);
    assert_eq!(piped.code, 3);
    assert!(
        piped.stdout.starts_with("verdict: ROLLBACK"),
        "{}",
        piped.stdout
    );
    assert!(!piped.stdout.contains('\x1b'));
    let piped_run = crate::helpers::canary(REPLAYED_REGRESSION);
    assert_eq!(piped_run.code, 3, "{}", piped_run.stderr);
    assert!(
        piped_run.stdout.starts_with("rollout: ROLLBACK"),
        "{}",
        piped_run.stdout
    );

    let Some((code, analyzed)) = canary_on_a_terminal(&ERROR_SPIKE, false) else {
        return;
    };
    assert_eq!(code, 3, "the exit code is the verdict's on a terminal too");
    assert!(
        analyzed.starts_with("\x1b[1m\x1b[31mVERDICT: ROLLBACK\x1b[0m"),
        "{analyzed:?}"
    );
    assert!(
        analyzed.contains("error_rate 1.821% vs 0.4218% baseline"),
        "{analyzed}"
    );
    assert!(
        analyzed.contains("\x1b[31mfail"),
        "the failing row is red: {analyzed:?}"
    );
    assert!(
        !analyzed.contains("per metric:"),
        "not the long table: {analyzed}"
    );

    let (_, plain) = canary_on_a_terminal(&ERROR_SPIKE, true).unwrap();
    assert!(plain.starts_with("VERDICT: ROLLBACK"), "{plain:?}");
    assert!(
        !plain.contains('\x1b'),
        "NO_COLOR turns colour off: {plain:?}"
    );

    let (code, ran) = canary_on_a_terminal(&REPLAYED_REGRESSION, true).unwrap();
    assert_eq!(code, 3);
    let summary = &ran[ran.find("VERDICT").unwrap_or_else(|| panic!("{ran:?}"))..];
    assert!(
        summary.starts_with("VERDICT: ROLLBACK  Rolled back: checkout-v2 was switched off"),
        "{summary}"
    );
    let rollout_line = summary
        .lines()
        .find(|line| line.starts_with("  looks: "))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        rollout_line.contains("    flag: 1% → 5% → ") && rollout_line.ends_with(" → 0% (kill)"),
        "{rollout_line}"
    );
    assert!(summary.contains("latency_p95  fail"), "{summary}");
}

#[test]
fn the_json_of_canary_run_keeps_its_fields_and_leaves_the_chart_series_out() {
    let mut args = REPLAYED_REGRESSION.to_vec();
    args.extend(["--format", "json"]);
    for run in [
        crate::helpers::canary(&args).stdout,
        canary_on_a_terminal(&args, false).map_or_else(String::new, |(_, stdout)| stdout),
    ]
    .into_iter()
    .filter(|stdout| !stdout.is_empty())
    {
        let summary: serde_json::Value =
            serde_json::from_str(&run).unwrap_or_else(|e| panic!("{e}: one JSON object: {run}"));
        let fields: Vec<&str> = summary
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            [
                "schema_version",
                "verdict",
                "status",
                "reasons",
                "profile",
                "flag",
                "dry_run",
                "stages_passed",
                "actuations",
                "history"
            ]
        );
        for look in summary["history"].as_array().unwrap() {
            let keys: Vec<&str> = look
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                keys,
                [
                    "look",
                    "at",
                    "stage_index",
                    "stage",
                    "traffic",
                    "confidence_level",
                    "verdict",
                    "decision",
                    "reasons",
                    "judgement",
                    "triggers"
                ]
            );
        }
    }
}
