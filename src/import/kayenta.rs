//! `canary import kayenta`: a Kayenta canary config (JSON) turned into a canary
//! profile with `[judge] algorithm = "kayenta"`, so it is judged as Kayenta judged it.
//!
//! Everything the config says is carried over with its meaning (docs/kayenta.md has
//! the key-by-key table); whatever cannot be is listed in [`Imported::not_carried`]
//! and in the profile's header comment, never dropped silently. Pure: text in, text
//! out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Deserialize;

/// Why a Kayenta config could not be imported, with where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ImportError {
    /// The config file as the user named it.
    pub file: String,
    /// 1-based line (0 when the problem is not at one place in the text).
    pub line: usize,
    /// 1-based column (0 likewise).
    pub column: usize,
    /// The key path, e.g. `metrics[2].name`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// What the caller adds to a config: the score thresholds Kayenta takes with each
/// execution, and values for the config's template variables.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `scoreThresholds.pass`, when the config has none or it is to be replaced.
    pub pass_score: Option<f64>,
    /// `scoreThresholds.marginal`, likewise.
    pub marginal_score: Option<f64>,
    /// Values for `${NAME}` in the config's query templates (Kayenta's
    /// `extendedScopeParams`, `location`, `project`, ...). `${scope}` is not one of
    /// them: it becomes canary's `{{scope}}`.
    pub variables: BTreeMap<String, String>,
}

/// An imported profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The profile's TOML text.
    pub profile: String,
    /// What could not be carried over, one sentence each.
    pub not_carried: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    name: Option<String>,
    description: Option<String>,
    judge: Option<Judge>,
    #[serde(default)]
    metrics: Vec<Metric>,
    #[serde(default)]
    templates: BTreeMap<String, String>,
    classifier: Option<Classifier>,
}

#[derive(Deserialize)]
struct Judge {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metric {
    name: String,
    query: Option<Query>,
    #[serde(default)]
    groups: Vec<String>,
    analysis_configurations: Option<Analysis>,
    /// The older name of `analysisConfigurations`.
    extensions: Option<Analysis>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Query {
    #[serde(rename = "type")]
    kind: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    label_bindings: Vec<String>,
    #[serde(default)]
    group_by_fields: Vec<String>,
    #[serde(default)]
    sum_by_fields: Vec<String>,
    custom_inline_template: Option<String>,
    custom_filter_template: Option<String>,
    resource_type: Option<String>,
}

#[derive(Deserialize)]
struct Analysis {
    canary: Option<Canary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Canary {
    direction: Option<String>,
    nan_strategy: Option<String>,
    critical: Option<bool>,
    muted: Option<bool>,
    must_have_data: Option<bool>,
    effect_size: Option<EffectSize>,
    outliers: Option<Outliers>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EffectSize {
    measure: Option<String>,
    allowed_increase: Option<f64>,
    allowed_decrease: Option<f64>,
    critical_increase: Option<f64>,
    critical_decrease: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outliers {
    strategy: Option<String>,
    outlier_factor: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Classifier {
    #[serde(default)]
    group_weights: BTreeMap<String, f64>,
    score_thresholds: Option<Thresholds>,
}

#[derive(Deserialize)]
struct Thresholds {
    pass: Option<f64>,
    marginal: Option<f64>,
}

/// Kayenta's defaults for the score thresholds when neither the config nor the caller
/// gives them (Spinnaker's canary stage defaults).
const DEFAULT_PASS: f64 = 95.0;
const DEFAULT_MARGINAL: f64 = 75.0;

/// Imports the Kayenta canary config `json` (read from `file`).
pub fn import_kayenta(
    json: &str,
    file: &str,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let config: Config = serde_json::from_str(json).map_err(|error| ImportError {
        file: file.to_owned(),
        line: error.line(),
        column: error.column(),
        field: field_of_json_error(&error.to_string()),
        message: error.to_string(),
    })?;
    let whole = |field: &str, message: String| ImportError {
        file: file.to_owned(),
        line: 0,
        column: 0,
        field: field.to_owned(),
        message,
    };
    if config.metrics.is_empty() {
        return Err(whole(
            "metrics",
            "the config has no metrics; a profile needs at least one".into(),
        ));
    }
    let mut notes = Vec::new();
    if let Some(name) = config.judge.as_ref().and_then(|j| j.name.as_deref())
        && !name.starts_with("NetflixACAJudge")
    {
        notes.push(format!(
            "the config names the judge {name:?}; the profile is judged as NetflixACAJudge-v1.0 \
             (Kayenta's only built-in judge)"
        ));
    }

    let thresholds = config
        .classifier
        .as_ref()
        .and_then(|c| c.score_thresholds.as_ref());
    let pass_score = options
        .pass_score
        .or(thresholds.and_then(|t| t.pass))
        .unwrap_or(DEFAULT_PASS);
    let marginal_score = options
        .marginal_score
        .or(thresholds.and_then(|t| t.marginal))
        .unwrap_or(DEFAULT_MARGINAL);
    if options.pass_score.is_none() && thresholds.and_then(|t| t.pass).is_none() {
        notes.push(format!(
            "the config has no score thresholds (Kayenta takes them with each execution): \
             pass_score {DEFAULT_PASS} and marginal_score {DEFAULT_MARGINAL} were used; give \
             --pass-score and --marginal-score for others"
        ));
    }

    let mut used_names = BTreeSet::new();
    let mut metrics_toml = String::new();
    let mut used_groups = BTreeSet::new();
    for (index, metric) in config.metrics.iter().enumerate() {
        let name = profile_name(&metric.name, index, &mut used_names);
        if name != metric.name {
            notes.push(format!(
                "metric {:?} is named {name:?} (profile names are letters, digits, '_', '-' and \
                 '.'); data files and reports use the new name",
                metric.name
            ));
        }
        let group = match metric.groups.as_slice() {
            [] => {
                notes.push(format!(
                    "metric {name:?} has no group: Kayenta leaves it out of every group score, \
                     here it is in group \"ungrouped\""
                ));
                "ungrouped".to_owned()
            }
            [first, rest @ ..] => {
                if !rest.is_empty() {
                    notes.push(format!(
                        "metric {name:?} is in groups {}: Kayenta counts it in each, a profile \
                         metric counts in one, so it is in {first:?} only",
                        metric.groups.join(", ")
                    ));
                }
                first.clone()
            }
        };
        used_groups.insert(group.clone());
        let canary = metric
            .analysis_configurations
            .as_ref()
            .or(metric.extensions.as_ref())
            .and_then(|a| a.canary.as_ref());
        let query = metric.query.as_ref().and_then(|query| {
            prometheus_query(query, &config.templates, options, &name, &mut notes)
        });
        if metric.query.is_none() {
            notes.push(format!("metric {name:?} has no query"));
        }
        write_metric(
            &mut metrics_toml,
            &name,
            &group,
            query.as_deref(),
            canary,
            &mut notes,
        );
    }

    let mut groups_toml = String::new();
    let declared = config
        .classifier
        .as_ref()
        .map(|c| c.group_weights.clone())
        .unwrap_or_default();
    if !declared.is_empty() {
        // Groups without a weight share what the declared ones leave (Kayenta's rule,
        // which counts declared groups without metrics too); written out, so the
        // profile declares every group it uses.
        let declared_sum: f64 = declared.values().sum();
        let unweighted: Vec<&String> = used_groups
            .iter()
            .filter(|g| !declared.contains_key(*g))
            .collect();
        let share = (100.0 - declared_sum) / unweighted.len().max(1) as f64;
        let mut weights = declared.clone();
        for group in unweighted {
            if share <= 0.0 {
                notes.push(format!(
                    "group {group:?} has no weight in the config and the declared weights \
                     already sum to 100 or more: Kayenta gives it 0, so its metrics do not \
                     move the score (weight 0 here too)"
                ));
            }
            weights.insert(group.clone(), share.max(0.0));
        }
        for (group, weight) in &weights {
            let _ = writeln!(
                groups_toml,
                "\n[groups.{}]\nweight = {}",
                toml_key(group),
                toml_number(*weight)
            );
        }
    }
    let mut text = String::new();
    let config_name = config.name.clone().unwrap_or_else(|| "kayenta".to_owned());
    let _ = writeln!(
        text,
        "# Imported by `canary import kayenta` from {file} (Kayenta canary config {config_name:?})."
    );
    let _ = writeln!(
        text,
        "# Judged as Kayenta's NetflixACAJudge-v1.0 judges it: see docs/kayenta.md."
    );
    if !notes.is_empty() {
        let _ = writeln!(text, "#\n# Not carried over as it was:");
        for note in &notes {
            let _ = writeln!(text, "# - {}", note.replace('\n', " "));
        }
    }
    let _ = writeln!(text, "\nname = {}", toml_string(&config_name));
    if let Some(description) = &config.description {
        let _ = writeln!(text, "description = {}", toml_string(description));
    }
    let _ = writeln!(
        text,
        "\n[judge]\nalgorithm = \"kayenta\"\npass_score = {}\nmarginal_score = {}",
        toml_number(pass_score),
        toml_number(marginal_score)
    );
    text.push_str(&groups_toml);
    text.push_str(&metrics_toml);
    Ok(Imported {
        profile: text,
        not_carried: notes,
    })
}

/// Writes one `[[metrics]]` table with its `[metrics.kayenta]` settings.
fn write_metric(
    text: &mut String,
    name: &str,
    group: &str,
    query: Option<&str>,
    canary: Option<&Canary>,
    notes: &mut Vec<String>,
) {
    let direction = match canary.and_then(|c| c.direction.as_deref()) {
        None => "either",
        Some(direction @ ("increase" | "decrease" | "either")) => direction,
        Some(other) => {
            notes.push(format!(
                "metric {name:?}: direction {other:?} is not Kayenta's; Kayenta reads it as \
                 \"either\", and so does the profile"
            ));
            "either"
        }
    };
    let _ = writeln!(
        text,
        "\n[[metrics]]\nname = {}\nkind = \"continuous\"\ndirection = \"{direction}\"",
        toml_string(name)
    );
    if canary.and_then(|c| c.critical).unwrap_or(false) {
        text.push_str("critical = true\n");
    }
    let _ = writeln!(text, "group = {}", toml_string(group));
    if let Some(query) = query {
        let _ = writeln!(text, "query = {}", toml_string(query));
    }
    text.push_str("[metrics.kayenta]\n");
    let effect = canary.and_then(|c| c.effect_size.as_ref());
    let measure = match effect.and_then(|e| e.measure.as_deref()) {
        Some("cles") => "cles",
        Some("meanRatio") | None => "mean_ratio",
        Some(other) => {
            notes.push(format!(
                "metric {name:?}: effect-size measure {other:?} is not Kayenta's; Kayenta uses \
                 the mean ratio for it, and so does the profile"
            ));
            "mean_ratio"
        }
    };
    let _ = writeln!(text, "measure = \"{measure}\"");
    let neutral = if measure == "cles" { 0.5 } else { 1.0 };
    let gates = [
        ("allowed_increase", effect.and_then(|e| e.allowed_increase)),
        ("allowed_decrease", effect.and_then(|e| e.allowed_decrease)),
        (
            "critical_increase",
            effect.and_then(|e| e.critical_increase),
        ),
        (
            "critical_decrease",
            effect.and_then(|e| e.critical_decrease),
        ),
    ];
    for (key, value) in gates {
        let _ = writeln!(text, "{key} = {}", toml_number(value.unwrap_or(neutral)));
    }
    let flag = |value: Option<bool>| value.unwrap_or(false);
    let _ = writeln!(
        text,
        "must_have_data = {}\nmuted = {}",
        flag(canary.and_then(|c| c.must_have_data)),
        flag(canary.and_then(|c| c.muted))
    );
    let nan = match canary.and_then(|c| c.nan_strategy.as_deref()) {
        Some("replace") => "replace",
        _ => "remove",
    };
    let _ = writeln!(text, "nan_strategy = \"{nan}\"");
    if let Some(outliers) = canary.and_then(|c| c.outliers.as_ref())
        && outliers.strategy.as_deref() == Some("remove")
    {
        let _ = writeln!(
            text,
            "outlier_factor = {}",
            toml_number(outliers.outlier_factor.unwrap_or(3.0))
        );
    }
}

/// The PromQL query Kayenta's Prometheus source would run for `query`, with
/// `${scope}` matchers turned into `{{scope}}` and `options.variables` filled in.
/// `None` (with a note) for other sources or a query that cannot be built.
fn prometheus_query(
    query: &Query,
    templates: &BTreeMap<String, String>,
    options: &ImportOptions,
    name: &str,
    notes: &mut Vec<String>,
) -> Option<String> {
    let kind = query.kind.as_deref().unwrap_or("unknown");
    if kind != "prometheus" {
        notes.push(format!(
            "metric {name:?}: its {kind} query is not carried over: canary reads Prometheus \
             only so far (issue 18); write its query in PromQL"
        ));
        return None;
    }
    if !query.sum_by_fields.is_empty() {
        notes.push(format!(
            "metric {name:?}: sumByFields ({}) is ignored, as Kayenta's Prometheus source \
             ignores it (groupByFields is what groups)",
            query.sum_by_fields.join(", ")
        ));
    }
    let template = match (&query.custom_inline_template, &query.custom_filter_template) {
        (Some(inline), _) => Some(inline.clone()),
        (None, Some(template)) => match templates.get(template) {
            Some(text) => Some(text.clone()),
            None => {
                notes.push(format!(
                    "metric {name:?}: its customFilterTemplate {template:?} is not in the \
                     config's templates, so its query has no filter"
                ));
                None
            }
        },
        (None, None) => None,
    };
    let filled = template.map(|text| fill_variables(&text, options, name, notes));
    if let Some(expression) = filled
        .as_deref()
        .and_then(|text| text.strip_prefix("PromQL:"))
    {
        return Some(scope_matchers(expression, name, notes));
    }
    let Some(metric_name) = &query.metric_name else {
        notes.push(format!(
            "metric {name:?}: its Prometheus query has neither metricName nor a PromQL: \
             template, so it has no query"
        ));
        return None;
    };
    let mut filters: Vec<String> = Vec::new();
    match filled.as_deref().filter(|t| !t.is_empty()) {
        Some(filter) => filters.extend(filter.split(',').map(str::to_owned)),
        None => {
            let resource = query.resource_type.as_deref().unwrap_or("(none)");
            notes.push(format!(
                "metric {name:?}: without a custom filter Kayenta selects each side by its \
                 resource type ({resource}); the query selects it by {{{{scope}}}} instead"
            ));
            filters.push("{{scope}}".to_owned());
        }
    }
    filters.extend(query.label_bindings.iter().cloned());
    let selector = scope_matchers(&filters.join(","), name, notes);
    let mut promql = format!("avg({metric_name}{{{selector}}})");
    if !query.group_by_fields.is_empty() {
        let _ = write!(promql, " by ({})", query.group_by_fields.join(","));
    }
    Some(promql)
}

/// `${NAME}` replaced by its value from `options.variables` (`${scope}` is left for
/// [`scope_matchers`]); unknown names are left in place and noted.
fn fill_variables(
    text: &str,
    options: &ImportOptions,
    name: &str,
    notes: &mut Vec<String>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut missing = BTreeSet::new();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let variable = &after[..end];
        match options.variables.get(variable) {
            Some(value) if variable != "scope" => out.push_str(value),
            _ => {
                if variable != "scope" {
                    missing.insert(variable.to_owned());
                }
                out.push_str(&rest[start..start + 2 + end + 1]);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    for variable in missing {
        notes.push(format!(
            "metric {name:?}: its query uses ${{{variable}}}, which Kayenta fills in per \
             execution; give --var {variable}=VALUE or edit the query"
        ));
    }
    out
}

/// Each `LABEL OP "${scope}"` (or single-quoted) matcher replaced by canary's
/// `{{scope}}`, which puts the side's own matchers there (`canary_scope` /
/// `baseline_scope`, e.g. `LABEL="my-canary"`). A `${scope}` anywhere else is noted.
fn scope_matchers(text: &str, name: &str, notes: &mut Vec<String>) -> String {
    const PLACEHOLDER: &str = "${scope}";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut labels = BTreeSet::new();
    let mut elsewhere = false;
    while let Some(at) = rest.find(PLACEHOLDER) {
        let before = &rest[..at];
        let after = &rest[at + PLACEHOLDER.len()..];
        let quote = before.chars().last().filter(|c| matches!(c, '"' | '\''));
        let matcher = quote.and_then(|quote| {
            if !after.starts_with(quote) {
                return None;
            }
            let head = before[..before.len() - 1].trim_end();
            let operator_start = head.trim_end_matches(['=', '~', '!']).len();
            let operator = &head[operator_start..];
            if !matches!(operator, "=" | "=~" | "!=" | "!~") {
                return None;
            }
            let label_part = head[..operator_start].trim_end();
            let label_start = label_part
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            let label = &label_part[label_start..];
            (!label.is_empty() && operator == "=").then(|| (label_start, label.to_owned()))
        });
        match matcher {
            Some((label_start, label)) => {
                out.push_str(&before[..label_start]);
                out.push_str("{{scope}}");
                labels.insert(label);
                rest = &after[1..];
            }
            None => {
                elsewhere = true;
                out.push_str(before);
                out.push_str(PLACEHOLDER);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if !labels.is_empty() {
        let example = labels.iter().next().cloned().unwrap_or_default();
        notes.push(format!(
            "metric {name:?}: the matcher on {} that took Kayenta's ${{scope}} is {{{{scope}}}}: \
             give each side its matchers (e.g. canary_scope = '{example}=\"my-canary\"')",
            labels.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if elsewhere {
        notes.push(format!(
            "metric {name:?}: its query uses ${{scope}} other than as a label's whole value; \
             replace it by hand (canary fills {{{{scope}}}} with label matchers)"
        ));
    }
    out
}

/// A profile metric name from a Kayenta one: letters, digits, `_ - .`; unique.
fn profile_name(kayenta: &str, index: usize, used: &mut BTreeSet<String>) -> String {
    let mut name = String::with_capacity(kayenta.len());
    for c in kayenta.chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if keep {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_matches('_').to_owned();
    let base = if name.is_empty() {
        format!("metric_{}", index + 1)
    } else {
        name
    };
    let mut candidate = base.clone();
    let mut suffix = 2;
    while !used.insert(candidate.clone()) {
        candidate = format!("{base}_{suffix}");
        suffix += 1;
    }
    candidate
}

fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

fn toml_key(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if bare {
        value.to_owned()
    } else {
        toml_string(value)
    }
}

fn toml_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// serde_json names the missing or unknown key in backticks; else the whole config.
fn field_of_json_error(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field"))
        .map_or_else(|| "config".to_owned(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Direction, EffectMeasure, JudgeAlgorithm, MetricKind, Profile, Severity};

    /// Kayenta's own sample configs (spinnaker/kayenta, Apache-2.0), by file name.
    fn sample(name: &str) -> String {
        let path = format!(
            "{}/fixtures/kayenta/configs/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn import(name: &str, options: &ImportOptions) -> (Imported, Profile) {
        let imported = import_kayenta(&sample(name), name, options).unwrap();
        let profile = Profile::parse(&imported.profile, "imported.toml")
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", imported.profile));
        (imported, profile)
    }

    #[test]
    fn every_kayenta_sample_config_imports_to_a_valid_kayenta_profile() {
        let dir = format!("{}/fixtures/kayenta/configs", env!("CARGO_MANIFEST_DIR"));
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let (imported, profile) = import(&name, &ImportOptions::default());
            let config: serde_json::Value = serde_json::from_str(&sample(&name)).unwrap();
            let metrics = config["metrics"].as_array().unwrap();
            assert_eq!(profile.judge.algorithm, JudgeAlgorithm::Kayenta, "{name}");
            assert_eq!(profile.metrics.len(), metrics.len(), "{name}");
            for (spec, metric) in profile.metrics.iter().zip(metrics) {
                let canary = metric
                    .get("analysisConfigurations")
                    .or(metric.get("extensions"))
                    .and_then(|a| a.get("canary"));
                let field = |key: &str| canary.and_then(|c| c.get(key));
                let direction = match field("direction").and_then(|d| d.as_str()) {
                    Some("increase") => Direction::Increase,
                    Some("decrease") => Direction::Decrease,
                    _ => Direction::Either,
                };
                let MetricKind::Continuous(kind) = &spec.kind else {
                    panic!("{name}: {} is not continuous", spec.name)
                };
                assert_eq!(kind.direction, direction, "{name} {}", spec.name);
                let critical = field("critical").and_then(|c| c.as_bool()) == Some(true);
                assert_eq!(spec.severity == Severity::Critical, critical, "{name}");
                let kayenta = spec.kayenta.unwrap();
                assert_eq!(
                    kayenta.muted,
                    field("muted").and_then(|m| m.as_bool()) == Some(true),
                    "{name}"
                );
                let effect = |key: &str| {
                    field("effectSize")
                        .and_then(|e| e.get(key))
                        .and_then(|v| v.as_f64())
                        .unwrap_or(1.0)
                };
                assert_eq!(
                    kayenta.allowed_increase,
                    effect("allowedIncrease"),
                    "{name}"
                );
                assert_eq!(
                    kayenta.critical_decrease,
                    effect("criticalDecrease"),
                    "{name}"
                );
                let query_type = metric["query"]["type"].as_str().unwrap();
                if query_type != "prometheus" {
                    assert!(spec.query.is_none(), "{name}");
                    assert!(
                        imported
                            .not_carried
                            .iter()
                            .any(|n| n.contains(&format!("its {query_type} query"))),
                        "{name}: {:?}",
                        imported.not_carried
                    );
                }
            }
            // Every note is in the profile's header too.
            for note in &imported.not_carried {
                assert!(imported.profile.contains(note.as_str()), "{name}: {note}");
            }
            count += 1;
        }
        assert!(count >= 9, "{count} sample configs");
    }

    #[test]
    fn a_prometheus_template_becomes_a_query_with_scope_and_filled_variables() {
        let (imported, profile) = import(
            "prometheus-integration-test-cpu.json",
            &ImportOptions::default(),
        );
        let metric = &profile.metrics[0];
        assert_eq!(metric.name, "CPU_usage_for_service");
        assert_eq!(
            metric.query.as_deref(),
            Some("avg(integration_test_cpu{namespace='${namespace}', {{scope}}})")
        );
        assert_eq!(
            (
                profile.judge.pass_score.value(),
                profile.judge.marginal_score.value()
            ),
            (75.0, 50.0)
        );
        let notes = imported.not_carried.join("\n");
        assert!(notes.contains("--var namespace=VALUE"), "{notes}");
        assert!(notes.contains("the matcher on scope"), "{notes}");
        assert!(
            notes.contains("is named \"CPU_usage_for_service\""),
            "{notes}"
        );

        let options = ImportOptions {
            variables: BTreeMap::from([("namespace".to_owned(), "prod".to_owned())]),
            pass_score: Some(90.0),
            marginal_score: None,
        };
        let (imported, profile) = import("prometheus-integration-test-cpu.json", &options);
        assert_eq!(
            profile.metrics[0].query.as_deref(),
            Some("avg(integration_test_cpu{namespace='prod', {{scope}}})")
        );
        assert_eq!(profile.judge.pass_score.value(), 90.0);
        assert!(!imported.not_carried.join("\n").contains("--var"));
    }

    #[test]
    fn label_bindings_and_group_by_build_kayentas_default_query() {
        let (imported, profile) =
            import("prometheus_canary_config.json", &ImportOptions::default());
        assert_eq!(
            profile.metrics[0].query.as_deref(),
            Some("avg(node_cpu{{{scope}},mode=~\"user|system\",job=\"node\"})")
        );
        let notes = imported.not_carried.join("\n");
        assert!(notes.contains("sumByFields (mode) is ignored"), "{notes}");
        assert!(notes.contains("judge \"dredd-v1.0\""), "{notes}");
    }

    #[test]
    fn groups_keep_kayentas_weights_and_extra_groups_are_listed() {
        // requests 50 + system 50 leave nothing for "bar"; "example" is a second group.
        let (imported, profile) = import("test-config.json", &ImportOptions::default());
        assert_eq!(profile.group_weights["requests"], 50.0);
        assert_eq!(profile.group_weights["bar"], 0.0);
        let notes = imported.not_carried.join("\n");
        assert!(notes.contains("groups system, example"), "{notes}");
        assert!(notes.contains("group \"bar\" has no weight"), "{notes}");
        // Muted metrics stay muted.
        let (_, profile) = import("prometheus-muted-metric.json", &ImportOptions::default());
        assert!(profile.metrics[0].kayenta.unwrap().muted);
        assert!(!profile.metrics[1].kayenta.unwrap().muted);
        // New Relic's effect sizes come over with their meaning.
        let (_, profile) = import("newrelic_canary_config.json", &ImportOptions::default());
        assert_eq!(
            profile.metrics[0].kayenta.unwrap().measure,
            EffectMeasure::MeanRatio
        );
    }

    #[test]
    fn bad_json_names_its_line_and_column() {
        let error = import_kayenta(
            "{\n  \"metrics\": [\n    {\"name\": 3}\n  ]\n}",
            "bad.json",
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            (error.file.as_str(), error.line),
            ("bad.json", 3),
            "{error}"
        );
        let error = import_kayenta("{\"metrics\": []}", "empty.json", &ImportOptions::default())
            .unwrap_err();
        assert_eq!(error.field, "metrics", "{error}");
    }
}
