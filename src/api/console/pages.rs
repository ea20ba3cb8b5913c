//! The console's markup: `maud` templates (checked when the crate compiles; every
//! value spliced in is escaped, text people and data control through [`Text`]).
//!
//! The parts a page polls ([`listing`], [`live`]) are rendered by the same functions
//! as the first answer, so a live update shows exactly what a reload would. Times are
//! written as absolute UTC in `<time>` elements (stable, so an unchanged listing keeps
//! its `ETag`); the script turns them into "3 min ago" and "in 20 s" as the clock runs.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Filters, MAX_NAME, MAX_REASON, STATE_GROUPS, Viewer, WINDOWS};
use crate::api::analyses::{action_target, pending_override};
use crate::api::error::ApiError;
use crate::api::state::ApiState;
use crate::domain::plan::RolloutPlan;
use crate::domain::{Profile, Verdict};
use crate::format::{duration, number};
use crate::judge::sequential::CheckEvidence;
use crate::notify::action_label;
use crate::report::analysis::{AnalysisReport, ChartData};
use crate::report::chart::{self, BASELINE, CANARY, Line, Mark};
use crate::report::html as report_html;
use crate::report::markup::Text;
use crate::store::{
    ActuationRecord, ActuationState, Analysis, AnalysisState, AnalysisSummary, AuditAction,
    AuditEntry, LookRecord, Overview,
};

/// What the analyses page lists.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The rows and how many matched.
    pub overview: Overview,
    /// Every state's count in the whole store.
    pub counts: BTreeMap<AnalysisState, u64>,
    /// When it was read, Unix seconds.
    pub now: f64,
}

/// `2026-12-07T12:03:05Z` and `2026-12-07 12:03:05 UTC`.
fn utc(at: f64) -> (String, String) {
    let Ok(time) = time::OffsetDateTime::from_unix_timestamp(at.floor() as i64) else {
        return (String::new(), number(at));
    };
    let (year, month, day) = (time.year(), u8::from(time.month()), time.day());
    let (hour, minute, second) = (time.hour(), time.minute(), time.second());
    (
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC"),
    )
}

/// A time the script keeps relative (`past`: "3 min ago"; `future`: "in 20 s").
fn moment(at: f64, relative: &str) -> Markup {
    let (iso, text) = utc(at);
    html! { time datetime=(iso) data-rel=(relative) title=(text) { (text) } }
}

fn state_words(state: AnalysisState) -> String {
    state.as_str().replace('_', " ")
}

fn state_badge(state: AnalysisState) -> Markup {
    html! { span class={ "badge state-" (state.as_str()) } { (state_words(state)) } }
}

fn verdict_badge(verdict: Option<Verdict>) -> Markup {
    match verdict {
        Some(verdict) => html! {
            span class={ "badge verdict-" (verdict.as_str()) } { (verdict.as_str().to_uppercase()) }
        },
        None => html! { span class="muted" { "none yet" } },
    }
}

/// The page around `content`: header with the viewer's sign-in, skip link, styles and
/// the one script.
fn layout(title: &str, viewer: &Viewer, head_style: Option<&str>, content: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (Text(title)) " · canary" }
                @if let Some(style) = head_style { style { (PreEscaped(style)) } }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#content" { "Skip to content" }
                header class="top" {
                    nav aria-label="Console" {
                        a class="brand" href="/" { "canary" }
                        a href="/" { "Analyses" }
                    }
                    div class="who" {
                        @match (&viewer.session, &viewer.actor) {
                            (Some(_), Some(actor)) => {
                                span { "Signed in as " strong { (Text(actor)) } }
                                @if !viewer.can_act { span class="muted" { " (read only)" } }
                                form method="post" action="/console/logout" class="inline" {
                                    input type="hidden" name="form_token" value=(viewer.form_token().unwrap_or_default());
                                    button type="submit" class="link" { "Sign out" }
                                }
                            }
                            _ => {
                                @if viewer.actions_enabled {
                                    a href="/console/login" { "Sign in" }
                                } @else {
                                    span class="muted" { "Manual actions are disabled (no API token)" }
                                }
                            }
                        }
                    }
                }
                main id="content" tabindex="-1" { (content) }
            }
        }
    }
    .into_string()
}

// ---------------------------------------------------------------------------------
// The analyses page.

/// The analyses page.
pub fn list_page(listing: &Listing, filters: &Filters, viewer: &Viewer, etag: &str) -> String {
    let query = filters.query_string();
    let content = html! {
        h1 { "Analyses" }
        (filter_form(filters))
        p id="live-status" class="live-status" role="status" aria-live="polite" {
            "Read " (moment(listing.now, "past"))
        }
        div id="listing" data-live={ "/console/rows" (query) } data-interval="1000" data-etag=(etag) {
            (PreEscaped(self::listing(listing, filters)))
        }
    };
    layout("Analyses", viewer, None, content)
}

/// The analyses page when its listing could not be read.
pub fn list_error(filters: &Filters, viewer: &Viewer, message: &str) -> String {
    let content = html! {
        h1 { "Analyses" }
        (filter_form(filters))
        p class="error" role="alert" { (Text(message)) }
    };
    layout("Analyses", viewer, None, content)
}

fn filter_form(filters: &Filters) -> Markup {
    let state = filters.state.as_deref().unwrap_or_default();
    let since = filters.since.as_deref().unwrap_or_default();
    html! {
        form class="filters" method="get" action="/" role="search" aria-label="Filter analyses" {
            div {
                label for="state" { "State" }
                select id="state" name="state" {
                    option value="" selected[state.is_empty()] { "any" }
                    optgroup label="groups" {
                        @for (name, label, _) in STATE_GROUPS {
                            option value=(name) selected[state == name] { (label) }
                        }
                    }
                    optgroup label="states" {
                        @for each in AnalysisState::ALL {
                            option value=(each.as_str()) selected[state == each.as_str()] { (state_words(each)) }
                        }
                    }
                }
            }
            div {
                label for="flag" { "Flag contains" }
                input id="flag" name="flag" type="search" maxlength="200" autocomplete="off"
                    value=(Text(filters.flag.as_deref().unwrap_or_default()));
            }
            div {
                label for="since" { "Changed" }
                select id="since" name="since" {
                    option value="" selected[since.is_empty()] { "any time" }
                    @for (name, label, _) in WINDOWS {
                        option value=(name) selected[since == name] { (label) }
                    }
                }
            }
            div class="buttons" {
                button type="submit" { "Apply" }
                a href="/" { "Clear" }
            }
        }
    }
}

/// The part of the analyses page that updates: counts, and one row per analysis.
pub fn listing(listing: &Listing, filters: &Filters) -> String {
    let mut plans: HashMap<&str, Option<Vec<String>>> = HashMap::new();
    let rows = &listing.overview.rows;
    let attention: u64 = [AnalysisState::AwaitingReview, AnalysisState::RollbackFailed]
        .iter()
        .map(|state| listing.counts.get(state).copied().unwrap_or_default())
        .sum();
    let base = filters_without_state(filters);
    html! {
        ul class="counts" aria-label="Analyses by state" {
            @for (state, count) in &listing.counts {
                @if *count > 0 {
                    li {
                        a href={ "/?state=" (state.as_str()) (base) } {
                            (state_badge(*state)) " " span class="count" { (count) }
                        }
                    }
                }
            }
        }
        @if attention > 0 {
            p class="attention" {
                strong { (attention) } " waiting for a person (awaiting review or rollback failed): "
                a href={ "/?state=attention" (base) } { "show them" }
            }
        }
        p class="shown" {
            @if rows.len() as u64 == listing.overview.matching {
                (rows.len()) " analyses"
            } @else {
                "The first " (rows.len()) " of " (listing.overview.matching) " matching analyses; narrow the filters to see the rest."
            }
        }
        div class="wide" tabindex="0" {
            table class="analyses" {
                caption class="visually-hidden" { "Analyses: those waiting for a person first, then new problems, then running, then the rest; newest change first within each" }
                thead {
                    tr {
                        th scope="col" { "Flag" }
                        th scope="col" { "State" }
                        th scope="col" { "Stage" }
                        th scope="col" { "Traffic" }
                        th scope="col" { "Verdict" }
                        th scope="col" { "Why" }
                        th scope="col" { "Submitted" }
                        th scope="col" { "Next look" }
                    }
                }
                tbody {
                    @if rows.is_empty() {
                        tr { td colspan="8" class="empty" { "No analysis matches these filters." } }
                    }
                    @for row in rows {
                        (row_markup(row, listing.now, stage_names(&mut plans, row)))
                    }
                }
            }
        }
    }
    .into_string()
}

/// The filters other than state, as `&flag=...&since=...`.
fn filters_without_state(filters: &Filters) -> String {
    let rest = Filters {
        state: None,
        ..filters.clone()
    }
    .query_string();
    rest.strip_prefix('?')
        .map(|text| format!("&{text}"))
        .unwrap_or_default()
}

/// The plan's stage names, parsed once per distinct profile text.
fn stage_names<'a>(
    plans: &mut HashMap<&'a str, Option<Vec<String>>>,
    row: &'a AnalysisSummary,
) -> Option<Vec<String>> {
    plans
        .entry(row.profile_text.as_str())
        .or_insert_with(|| {
            Profile::parse(&row.profile_text, &row.profile_name)
                .ok()
                .and_then(|profile| profile.plan)
                .map(|plan| plan.stages.into_iter().map(|stage| stage.name).collect())
        })
        .clone()
}

fn row_markup(row: &AnalysisSummary, now: f64, stages: Option<Vec<String>>) -> Markup {
    let reason = row.reasons.first().map(String::as_str).unwrap_or_default();
    let short: String = reason.chars().take(180).collect();
    let pending = row
        .requested_action
        .filter(|action| matches!(action, AuditAction::Promote | AuditAction::Rollback))
        .filter(|_| !row.state.is_final());
    html! {
        tr data-id=(row.id) data-state=(row.state.as_str()) {
            th scope="row" {
                a href={ "/console/analyses/" (row.id) } { (Text(&row.flag)) }
                div class="sub" {
                    (Text(&row.profile_name))
                    @if row.dry_run { " · " span class="tag" { "dry run" } }
                }
            }
            td {
                (state_badge(row.state))
                @if let Some(action) = pending {
                    div class="sub" { (action_label(action.as_str())) " requested" }
                }
            }
            td {
                @match row.current_stage {
                    Some(index) => {
                        @match &stages {
                            Some(names) => {
                                (Text(names.get(index).map(String::as_str).unwrap_or("?")))
                                span class="sub" { " (" (index + 1) " of " (names.len()) ")" }
                            }
                            None => { "stage " (index + 1) }
                        }
                    }
                    None => span class="muted" { "not started" },
                }
            }
            td class="num" {
                @match row.traffic {
                    Some(traffic) => { (number(traffic)) "%" }
                    None => span class="muted" { "—" },
                }
            }
            td { (verdict_badge(row.latest_verdict)) }
            td class="why" title=(Text(reason)) {
                (Text(&short)) @if short.len() < reason.len() { "…" }
            }
            td { (moment(row.created_at, "past")) }
            td { (next_look(row.state, row.next_look_at.or(row.start_at), now)) }
        }
    }
}

fn next_look(state: AnalysisState, at: Option<f64>, now: f64) -> Markup {
    if state.is_done() {
        return html! { span class="muted" { "—" } };
    }
    if state == AnalysisState::Paused {
        return html! { span class="muted" { "paused" } };
    }
    match at {
        Some(at) if at > now => moment(at, "future"),
        _ => html! { "due now" },
    }
}

// ---------------------------------------------------------------------------------
// The analysis page.

/// Everything the analysis page shows, read from the store.
pub struct AnalysisData {
    /// The analysis.
    pub analysis: Analysis,
    /// Its looks, by number.
    pub looks: Vec<LookRecord>,
    /// Its flag changes.
    pub actuations: Vec<ActuationRecord>,
    /// Its manual actions.
    pub audit: Vec<AuditEntry>,
    /// Its report.
    pub report: AnalysisReport,
    /// The report's charts.
    pub charts: ChartData,
    /// Its rollout plan, from the stored profile.
    pub plan: Option<RolloutPlan>,
    /// When it was read.
    pub now: f64,
}

/// What decides whether the analysis page changed: the analysis and its flag changes.
pub struct Head {
    /// The analysis.
    pub analysis: Analysis,
    /// Its flag changes.
    pub actuations: Vec<ActuationRecord>,
}

impl Head {
    /// Reads the analysis `id` and its flag changes: two cheap reads, no looks.
    pub async fn read(state: &ApiState, id: &str) -> Result<Head, ApiError> {
        let id = crate::api::analyses::parse_id(id)?;
        let analysis = crate::api::analyses::read(state, id).await?;
        let actuations = state.store.list_actuations(id).await?;
        Ok(Head {
            analysis,
            actuations,
        })
    }

    /// What changes when the page must: the analysis's version (every look and manual
    /// action bumps it), its state and the flag changes' states (completions do not bump
    /// the version).
    pub fn stamp(&self) -> String {
        stamp_of(&self.analysis, &self.actuations)
    }
}

impl AnalysisData {
    /// Reads the analysis `id` and everything shown with it.
    pub async fn read(state: &ApiState, id: &str) -> Result<AnalysisData, ApiError> {
        Self::complete(state, Head::read(state, id).await?).await
    }

    /// Reads the rest of what the page shows about `head`'s analysis.
    pub async fn complete(state: &ApiState, head: Head) -> Result<AnalysisData, ApiError> {
        let Head {
            analysis,
            actuations,
        } = head;
        let mut looks = state.store.list_looks(analysis.id).await?;
        looks.sort_by_key(|look| look.look);
        let audit = state.store.audit_log(analysis.id).await?;
        let report = AnalysisReport::from_analysis(&analysis, &looks, &actuations, &audit);
        let charts = ChartData::from_looks(&looks);
        let plan = Profile::parse(&analysis.profile_text, &analysis.profile_name)
            .ok()
            .and_then(|profile| profile.plan);
        Ok(AnalysisData {
            analysis,
            looks,
            actuations,
            audit,
            report,
            charts,
            plan,
            now: state.clock.now(),
        })
    }

    /// [`Head::stamp`] of what was read.
    pub fn stamp(&self) -> String {
        stamp_of(&self.analysis, &self.actuations)
    }
}

fn stamp_of(analysis: &Analysis, actuations: &[ActuationRecord]) -> String {
    let mut stamp = format!(
        "{}|{}|{}|{:?}",
        analysis.version, analysis.state, analysis.updated_at, analysis.requested_action
    );
    for actuation in actuations {
        stamp.push_str(&format!(
            "|{}:{}",
            actuation.idempotency_key,
            actuation.state.as_str()
        ));
    }
    stamp
}

/// The analysis page.
pub fn analysis_page(
    data: &AnalysisData,
    viewer: &Viewer,
    done: Option<&str>,
    etag: &str,
) -> String {
    let analysis = &data.analysis;
    let done = done.and_then(|action| action.parse::<AuditAction>().ok());
    let content = html! {
        p class="crumbs" { a href="/" { "← All analyses" } }
        h1 { (Text(&analysis.flag)) " " (state_badge(analysis.state)) }
        @if let Some(action) = done {
            p class="notice" role="status" {
                (action_label(action.as_str())) " recorded and audited"
                @if matches!(action, AuditAction::Promote | AuditAction::Rollback) {
                    "; a worker carries it out within moments and this page shows it"
                }
                "."
            }
        }
        p id="live-status" class="live-status" role="status" aria-live="polite" {
            "Read " (moment(data.now, "past"))
        }
        div id="live" data-live={ "/console/analyses/" (analysis.id) "/live" }
            data-interval="1000" data-final=(analysis.state.is_done()) data-etag=(etag) {
            (PreEscaped(live(data, viewer)))
        }
    };
    layout(
        &format!("{} ({})", analysis.flag, state_words(analysis.state)),
        viewer,
        Some(report_html::STYLE),
        content,
    )
}

/// The part of the analysis page that updates.
pub fn live(data: &AnalysisData, viewer: &Viewer) -> String {
    html! {
        div hidden data-state-final=(data.analysis.state.is_done()) {}
        (report_html::banner(&data.report))
        (standing(data))
        (actions(data, viewer))
        (stage_timeline(data))
        (flag_path(data))
        (triggers(data))
        (evidence(data))
        (audit_log(&data.audit))
        section aria-labelledby="report-heading" {
            h2 id="report-heading" { "Report" }
            p {
                a href={ "/v1/analyses/" (data.analysis.id) "/report" } { "The report as one page" }
                " · "
                a href={ "/v1/analyses/" (data.analysis.id) "/report.json" } { "as JSON" }
            }
            (report_html::sections(&data.report, &data.charts))
        }
    }
    .into_string()
}

fn standing(data: &AnalysisData) -> Markup {
    let analysis = &data.analysis;
    let stage = analysis.current_stage.map(|index| {
        let name = data
            .plan
            .as_ref()
            .and_then(|plan| plan.stages.get(index))
            .map(|stage| stage.name.clone())
            .unwrap_or_else(|| format!("stage {}", index + 1));
        let of = data.plan.as_ref().map(|plan| plan.stages.len());
        (name, index + 1, of)
    });
    html! {
        dl class="standing" {
            div { dt { "State" } dd { (state_badge(analysis.state)) } }
            div { dt { "Latest verdict" } dd { (verdict_badge(analysis.latest_verdict)) } }
            div {
                dt { "Stage" }
                dd {
                    @match &stage {
                        Some((name, number, Some(of))) => { (Text(name)) " (" (number) " of " (of) ")" }
                        Some((name, _, None)) => { (Text(name)) }
                        None => span class="muted" { "not started" },
                    }
                }
            }
            div {
                dt { "Traffic" }
                dd {
                    @match analysis.traffic {
                        Some(traffic) => { (number(traffic)) "%" }
                        None => span class="muted" { "—" },
                    }
                }
            }
            div { dt { "Profile" } dd { (Text(&analysis.profile_name)) } }
            div { dt { "Source" } dd { (Text(&analysis.source)) } }
            div {
                dt { "Actuator" }
                dd {
                    (Text(&analysis.actuator))
                    @if analysis.dry_run { " " span class="tag" { "dry run: the flag is never changed" } }
                }
            }
            div { dt { "Submitted" } dd { (moment(analysis.created_at, "past")) } }
            div { dt { "Changed" } dd { (moment(analysis.updated_at, "past")) } }
            div {
                dt { "Next look" }
                dd { (next_look(analysis.state, analysis.next_look_at.or(analysis.start_at), data.now)) }
            }
        }
        @if let Some(action) = pending_override(analysis) {
            p class="notice" { (action_label(action.as_str())) " requested; waiting for a worker to carry it out." }
        }
    }
}

fn actions(data: &AnalysisData, viewer: &Viewer) -> Markup {
    let analysis = &data.analysis;
    let allowed: Vec<AuditAction> = [
        AuditAction::Pause,
        AuditAction::Resume,
        AuditAction::Promote,
        AuditAction::Rollback,
    ]
    .into_iter()
    .filter(|action| action_target(analysis, *action).is_ok())
    .collect();
    if allowed.is_empty() {
        return html! {};
    }
    html! {
        section class="actions" aria-labelledby="actions-heading" {
            h2 id="actions-heading" { "Actions" }
            @if !viewer.actions_enabled {
                p class="muted" { "Manual actions are disabled: this server has no API token with scope act." }
            } @else if viewer.can_act {
                ul class="buttons" {
                    @for action in &allowed {
                        li {
                            a class={ "button" @if *action == AuditAction::Rollback { " danger" } }
                                href={ "/console/analyses/" (analysis.id) "/confirm?action=" (action.as_str()) } {
                                (action_label(action.as_str())) "…"
                            }
                        }
                    }
                }
            } @else if viewer.session.is_some() {
                p class="muted" { "Your token cannot act (it lacks scope act)." }
            } @else {
                p {
                    a href={ "/console/login?next=/console/analyses/" (analysis.id) } { "Sign in" }
                    " to pause, resume, promote or roll back."
                }
            }
        }
    }
}

fn stage_timeline(data: &AnalysisData) -> Markup {
    let Some(plan) = &data.plan else {
        return html! {};
    };
    let current = data.analysis.current_stage;
    let finished = data.analysis.state.is_final();
    html! {
        section aria-labelledby="stages-heading" {
            h2 id="stages-heading" { "Stages" }
            ol class="stages" {
                @for (index, stage) in plan.stages.iter().enumerate() {
                    @let looks: Vec<&LookRecord> = data.looks.iter().filter(|look| look.stage_index == index).collect();
                    @let status = match current {
                        Some(at) if index < at => "done",
                        Some(at) if index == at && !finished => "current",
                        Some(at) if index == at => "last",
                        _ => "ahead",
                    };
                    li class={ "stage " (status) } aria-current=[(status == "current").then_some("step")] {
                        @let traffic = format!("{}%", number(stage.traffic.value()));
                        div class="stage-name" {
                            (Text(&stage.name))
                            @if stage.name != traffic { " · " (traffic) }
                        }
                        div class="sub" {
                            @match status {
                                "done" => "passed",
                                "current" => "now",
                                "last" => "where it ended",
                                _ => "not reached",
                            }
                            @if let (Some(first), Some(last)) = (looks.first(), looks.last()) {
                                " · " (looks.len()) " looks, "
                                (duration((last.at - first.at).max(0.0)))
                            }
                        }
                        @if !looks.is_empty() {
                            ol class="looks" aria-label={ "Looks at " (Text(&stage.name)) } {
                                @for look in looks.iter().rev().take(40).rev() {
                                    li class={ "look verdict-" (look.verdict.as_str()) }
                                        title={ "look " (look.look) ": " (look.verdict.as_str()) ", " (Text(&look.decision)) } {
                                        span class="visually-hidden" { "look " (look.look) ": " (look.verdict.as_str()) ", " (Text(&look.decision)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn flag_path(data: &AnalysisData) -> Markup {
    let start = data.analysis.created_at;
    let mut points: Vec<(f64, f64)> = data
        .actuations
        .iter()
        .filter(|actuation| actuation.state == ActuationState::Applied)
        .map(|actuation| {
            let at = actuation.completed_at.unwrap_or(actuation.at);
            ((at - start) / 60.0, actuation.target)
        })
        .collect();
    if let Some(&(_, last)) = points.last() {
        let until = if data.analysis.state.is_done() {
            data.analysis.updated_at
        } else {
            data.now
        };
        points.push((
            ((until - start) / 60.0).max(points[points.len() - 1].0),
            last,
        ));
    }
    html! {
        section aria-labelledby="flag-heading" {
            h2 id="flag-heading" { "The flag " code { (Text(&data.analysis.flag)) } }
            @if data.actuations.is_empty() {
                p class="muted" { "No flag change yet." }
            } @else {
                @if points.len() > 1 {
                    figure class="chart" {
                        (PreEscaped(chart::draw(
                            &[Line { points: &points, colour: CANARY, steps: true }],
                            &[],
                            &[],
                            "minutes since submission; canary traffic in percent",
                        )))
                        figcaption { "The canary's share of traffic as the actuator set it (applied changes)." }
                    }
                }
                div class="wide" tabindex="0" {
                    table {
                        caption class="visually-hidden" { "Flag changes" }
                        thead { tr { th scope="col" { "When" } th scope="col" { "Change" } th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "Detail" } } }
                        tbody {
                            @for actuation in &data.actuations {
                                tr {
                                    td { (moment(actuation.at, "past")) }
                                    td { (Text(&actuation.action.replace('_', " "))) }
                                    td class="num" { (number(actuation.target)) "%" }
                                    td { span class={ "outcome-" (actuation.state.as_str()) } { (actuation.state.as_str()) } }
                                    td { (Text(actuation.detail.as_deref().unwrap_or_default())) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn triggers(data: &AnalysisData) -> Markup {
    let Some(latest) = data.looks.last() else {
        return html! {};
    };
    if latest.body.triggers.is_empty() {
        return html! {};
    }
    let met_count = |name: &str| {
        data.looks
            .iter()
            .filter(|look| look.body.triggers.iter().any(|t| t.name == name && t.met))
            .count()
    };
    html! {
        section aria-labelledby="triggers-heading" {
            h2 id="triggers-heading" { "Triggers at look " (latest.look) }
            div class="wide" tabindex="0" {
                table {
                    caption class="visually-hidden" { "Rollback triggers at the latest look" }
                    thead { tr {
                        th scope="col" { "Trigger" } th scope="col" { "Metric" } th scope="col" { "Now" }
                        th scope="col" { "Value" } th scope="col" { "Limit" } th scope="col" { "Met at" }
                        th scope="col" { "Why" }
                    } }
                    tbody {
                        @for trigger in &latest.body.triggers {
                            tr class={ "trigger " @if trigger.met { "fired" } @else { "clear" } } {
                                th scope="row" { (Text(&trigger.name)) }
                                td { (Text(&trigger.metric)) }
                                td {
                                    @if trigger.met { span class="fired-word" { "MET" } } @else { span class="clear-word" { "clear" } }
                                }
                                td class="num" { (trigger.value.map(number).unwrap_or_default()) }
                                td class="num" { (trigger.limit.map(number).unwrap_or_default()) }
                                td class="num" { (met_count(&trigger.name)) " of " (data.looks.len()) " looks" }
                                td { (Text(&trigger.reason)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One check of one metric at one look.
struct EvidencePoint<'a> {
    look: u64,
    stage: &'a str,
    check: &'a CheckEvidence,
}

/// The most looks a metric's evidence table lists (the charts show every look).
const EVIDENCE_ROWS: usize = 12;

fn evidence(data: &AnalysisData) -> Markup {
    // metric -> check -> points, in look order.
    let mut metrics: BTreeMap<&str, BTreeMap<&str, Vec<EvidencePoint<'_>>>> = BTreeMap::new();
    for look in &data.looks {
        for metric in &look.body.judgement.metrics {
            let Some(sequential) = &metric.sequential else {
                continue;
            };
            for check in &sequential.checks {
                metrics
                    .entry(metric.name.as_str())
                    .or_default()
                    .entry(check.check.as_str())
                    .or_default()
                    .push(EvidencePoint {
                        look: look.look,
                        stage: &look.body.stage,
                        check,
                    });
            }
        }
    }
    if metrics.is_empty() {
        return html! {
            @if !data.looks.is_empty() {
                section aria-labelledby="evidence-heading" {
                    h2 id="evidence-heading" { "Evidence over looks" }
                    p class="muted" { "This profile judges each look on its own (no sequential evidence); each look's numbers are in the report below." }
                }
            }
        };
    }
    html! {
        section aria-labelledby="evidence-heading" {
            h2 id="evidence-heading" { "Evidence over looks" }
            p class="sub" {
                "Each check's e-value against the threshold that fails the metric (1/α of its share of the error budget), and its estimate with the anytime-valid interval: "
                "for rank checks the chance that a canary value exceeds a baseline value after the tolerance (above 0.5 is worse than tolerated); for rate checks the canary/baseline error-rate ratio."
            }
            @for (metric, checks) in &metrics {
                @for (check, points) in checks {
                    (evidence_block(metric, check, points))
                }
            }
        }
    }
}

fn evidence_block(metric: &str, check: &str, points: &[EvidencePoint<'_>]) -> Markup {
    let Some(latest) = points.last() else {
        return html! {};
    };
    let threshold = latest.check.threshold;
    let e_line: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.look as f64, p.check.ln_e_value / std::f64::consts::LN_10))
        .collect();
    let estimates: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.check.estimate.map(|e| (p.look as f64, e)))
        .collect();
    let lower: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.check.interval.map(|i| (p.look as f64, i[0])))
        .collect();
    let upper: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.check.interval.map(|i| (p.look as f64, i[1])))
        .collect();
    let rank_check = !lower.is_empty();
    let heading = format!("{metric} · {}", check.replace('_', " "));
    html! {
        article class="evidence" aria-label=(Text(&heading)) {
            h3 { (Text(&heading)) }
            p class="sub" {
                (Text(&latest.check.null))
                " · now: " (Text(&latest.check.effect))
                @if latest.check.fails { " · " span class="fail" { "fails the metric" } }
                @else if latest.check.crossed { " · " span class="inconclusive" { "evidence crossed, within tolerance" } }
            }
            div class="charts" {
                figure {
                    (PreEscaped(chart::draw(
                        &[Line { points: &e_line, colour: CANARY, steps: false }],
                        &[],
                        &[Mark { value: threshold.log10(), label: format!("fails at e ≥ {}", number(threshold)), relative: false }],
                        "look; log10 of the e-value",
                    )))
                    figcaption { "e-value over looks (log scale) against the threshold that fails " (Text(metric)) "." }
                }
                @if !estimates.is_empty() {
                    figure {
                        (PreEscaped(chart::draw(
                            &[
                                Line { points: &estimates, colour: CANARY, steps: false },
                                Line { points: &lower, colour: BASELINE, steps: false },
                                Line { points: &upper, colour: BASELINE, steps: false },
                            ],
                            &[],
                            &if rank_check {
                                vec![Mark { value: 0.5, label: "no change beyond tolerance".to_owned(), relative: true }]
                            } else {
                                vec![Mark { value: 1.0, label: "same error rate".to_owned(), relative: true }]
                            },
                            if rank_check { "look; P(canary > baseline) after the tolerance" } else { "look; canary/baseline error-rate ratio" },
                        )))
                        figcaption {
                            "Estimate (orange)"
                            @if rank_check { " and its anytime-valid interval (blue)" }
                            " over looks."
                        }
                    }
                }
            }
            div class="wide" tabindex="0" {
                table {
                    caption class="visually-hidden" { "Evidence of " (Text(&heading)) " by look" }
                    thead { tr {
                        th scope="col" { "Look" } th scope="col" { "Stage" } th scope="col" { "Estimate" }
                        th scope="col" { "Interval" } th scope="col" { "e-value" } th scope="col" { "Fails at" }
                        th scope="col" { "Outcome" }
                    } }
                    tbody {
                        @for point in points.iter().rev().take(EVIDENCE_ROWS) {
                            tr {
                                td class="num" { (point.look) }
                                td { (Text(point.stage)) }
                                td class="num" { (point.check.estimate.map(number).unwrap_or_else(|| "—".to_owned())) }
                                td class="num" {
                                    @match point.check.interval {
                                        Some([low, high]) => { "[" (number(low)) ", " (number(high)) "]" }
                                        None => "—",
                                    }
                                }
                                td class="num" { (number(point.check.e_value)) }
                                td class="num" { (number(point.check.threshold)) }
                                td {
                                    @if point.check.fails { span class="fail" { "fails" } }
                                    @else if point.check.crossed { span class="inconclusive" { "crossed, tolerated" } }
                                    @else if point.check.beyond_tolerance { span class="inconclusive" { "beyond tolerance, not yet evident" } }
                                    @else { span class="pass" { "within" } }
                                }
                            }
                        }
                    }
                }
                @if points.len() > EVIDENCE_ROWS {
                    p class="sub" { "The latest " (EVIDENCE_ROWS) " of " (points.len()) " looks; the charts show them all." }
                }
            }
        }
    }
}

fn audit_log(audit: &[AuditEntry]) -> Markup {
    html! {
        section aria-labelledby="audit-heading" {
            h2 id="audit-heading" { "Audit log" }
            @if audit.is_empty() {
                p class="muted" { "No manual action." }
            } @else {
                div class="wide" tabindex="0" {
                    table class="audit" {
                        caption class="visually-hidden" { "Manual actions, oldest first" }
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                            th scope="col" { "From → to" } th scope="col" { "Reason" }
                        } }
                        tbody {
                            @for entry in audit {
                                tr {
                                    td { (moment(entry.at, "past")) }
                                    td { (Text(&entry.actor)) }
                                    td { (action_label(entry.action.as_str())) }
                                    td { (state_words(entry.from_state)) " → " (state_words(entry.to_state)) }
                                    td { (Text(&entry.reason)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Confirmation, sign-in, errors.

/// The page that confirms a manual action and asks why.
pub fn confirm(
    analysis: &Analysis,
    action: AuditAction,
    refused: Option<&str>,
    viewer: &Viewer,
) -> String {
    let label = action_label(action.as_str());
    let title = format!("{label} {}?", analysis.flag);
    let content = html! {
        p class="crumbs" { a href={ "/console/analyses/" (analysis.id) } { "← Back to " (Text(&analysis.flag)) } }
        h1 { (Text(&title)) }
        dl class="standing" {
            div { dt { "State" } dd { (state_badge(analysis.state)) } }
            div { dt { "Latest verdict" } dd { (verdict_badge(analysis.latest_verdict)) } }
            div {
                dt { "Traffic" }
                dd { @match analysis.traffic { Some(t) => { (number(t)) "%" } None => "—" } }
            }
            div { dt { "Profile" } dd { (Text(&analysis.profile_name)) } }
        }
        @if let Some(why) = refused {
            p class="error" role="alert" { "Not possible now: " (Text(why)) "." }
        } @else {
            p {
                @match action {
                    AuditAction::Pause => "Pausing stops the looks; the flag stays where it is until someone resumes or acts.",
                    AuditAction::Resume => "Resuming lets the workers take looks and move the flag again.",
                    AuditAction::Promote => "Promoting sends the flag to 100 % without further looks; a worker carries it out.",
                    AuditAction::Rollback => "Rolling back switches the flag off (its kill switch); a worker carries it out within seconds.",
                }
            }
            form method="post" action={ "/console/analyses/" (analysis.id) "/actions" } class="confirm" {
                input type="hidden" name="action" value=(action.as_str());
                input type="hidden" name="expected_version" value=(analysis.version);
                input type="hidden" name="form_token" value=(viewer.form_token().unwrap_or_default());
                label for="reason" { "Why (kept in the audit log with your name)" }
                textarea id="reason" name="reason" required maxlength=(MAX_REASON) autofocus {}
                div class="buttons" {
                    button type="submit" class=[(action == AuditAction::Rollback).then_some("danger")] {
                        "Confirm: " (label) " " (Text(&analysis.flag))
                    }
                    a href={ "/console/analyses/" (analysis.id) } { "Cancel" }
                }
            }
        }
    };
    layout(&title, viewer, None, content)
}

/// The sign-in page, with the reason the last attempt was refused.
pub fn login(next: &str, refused: Option<&str>, viewer: &Viewer) -> String {
    let content = html! {
        h1 { "Sign in" }
        p { "Sign in with an API token of this server. Reading may be open; pausing, resuming, promoting and rolling back need a token with scope act. The token is kept in a cookie this site's pages send and its scripts cannot read, for 12 hours or until you sign out." }
        @if let Some(message) = refused {
            p class="error" role="alert" { (Text(message)) }
        }
        form method="post" action="/console/login" class="login" {
            input type="hidden" name="next" value=(Text(next));
            label for="token" { "API token" }
            input id="token" name="token" type="password" required autocomplete="current-password";
            label for="name" { "Your name (optional; the audit log shows it beside the token's name)" }
            input id="name" name="name" type="text" maxlength=(MAX_NAME) autocomplete="name";
            div class="buttons" { button type="submit" { "Sign in" } }
        }
    };
    layout("Sign in", viewer, None, content)
}

/// An error as a page.
pub fn error(status: StatusCode, message: &str, viewer: &Viewer) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let content = html! {
        h1 { (Text(&title)) }
        p class="error" role="alert" { (Text(message)) }
        p { a href="/" { "All analyses" } }
    };
    layout(&title, viewer, None, content)
}
