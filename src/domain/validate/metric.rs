//! One `[[metrics]]` table: the keys every kind shares, the keys that belong to one
//! kind (refused on the others rather than ignored), and one validator per kind.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::Validator;
use super::raw::{KindName, OutlierMethodName, RawKayenta, RawMetric};
use crate::domain::HumanDuration;
use crate::domain::profile::{
    ContinuousKind, Direction, EffectMeasure, JudgeAlgorithm, JudgeMode, JudgeSettings,
    KayentaMetric, KayentaNanStrategy, MetricKind, MetricQueries, MetricSpec, NanPolicy,
    OutlierPolicy, ProfileError, ProportionKind, QueryLanguage, Severity, ThresholdKind,
    ThresholdStatistic,
};

const DEFAULT_MAX_NAN_FRACTION: f64 = 0.1;
const DEFAULT_IQR_MULTIPLIER: f64 = 1.5;

/// The default `min_samples` per kind: enough for the normal approximations to be
/// trustworthy (continuous), for a 0.1–1 % error rate to produce a few errors
/// (proportion), and at least one value (threshold).
fn default_min_samples(kind: KindName) -> u64 {
    match kind {
        KindName::Continuous => 20,
        KindName::Proportion => 500,
        KindName::Threshold => 1,
    }
}

/// Validates the metric at `index` (0-based) whose table is at `span`.
pub(super) fn validate_metric(
    v: &Validator<'_>,
    index: usize,
    span: Range<usize>,
    mut raw: RawMetric,
    judge: &JudgeSettings,
) -> Result<MetricSpec, ProfileError> {
    let mode = judge.mode;
    let name = metric_name(v, index, &span, &raw)?;
    let kind = match &raw.kind {
        Some(kind) => *kind.get_ref(),
        None => {
            return Err(v.error(
                span,
                &format!("metrics.{name}.kind"),
                "is required: one of \"continuous\", \"proportion\", \"threshold\"",
            ));
        }
    };
    let m = Metric {
        v,
        name: &name,
        kind,
    };
    m.keys_of_other_kinds(&raw)?;
    let kayenta = m.kayenta(&mut raw, judge.algorithm)?;
    m.queries(&raw)?;
    let queries = m.other_queries(&raw)?;
    let bursts = m.sequential_checks(&raw, mode)?;
    m.only_for(
        "raw_samples",
        &raw.raw_samples,
        &[KindName::Continuous, KindName::Threshold],
        "continuous and threshold",
    )?;
    m.cumulative(&raw)?;
    let kind = match kind {
        KindName::Continuous => m.continuous(&raw)?,
        KindName::Proportion => m.proportion(&raw)?,
        KindName::Threshold => m.threshold(&raw, &span)?,
    };
    // Kayenta has no minimum: its judge compares whatever there is, unless the profile
    // asks for canary's guard (fewer points than `min_samples` hold).
    let min_samples = match (&kayenta, &raw.min_samples) {
        (Some(_), None) => 1,
        _ => m.min_samples(&raw)?,
    };
    let severity = m.severity(&raw)?;
    let group = m.group(&raw)?;
    let (nan_policy, max_nan_fraction) = m.nan(&raw)?;
    let outliers = m.outliers(&raw)?;
    Ok(MetricSpec {
        name,
        kind,
        min_samples,
        severity,
        group,
        query: raw.query.map(Spanned::into_inner),
        errors_query: raw.errors_query.map(Spanned::into_inner),
        total_query: raw.total_query.map(Spanned::into_inner),
        raw_samples: raw.raw_samples.is_some_and(|r| *r.get_ref()),
        cumulative: raw.cumulative.is_some_and(|c| *c.get_ref()),
        nan_policy,
        max_nan_fraction,
        outliers,
        tails: raw.tails.is_some_and(|t| *t.get_ref()),
        bursts,
        kayenta,
        queries,
    })
}

/// The metric's name: letters, digits, `_`, `-` and `.`.
fn metric_name(
    v: &Validator<'_>,
    index: usize,
    span: &Range<usize>,
    raw: &RawMetric,
) -> Result<String, ProfileError> {
    match &raw.name {
        Some(name) => {
            let value = name.get_ref();
            let valid = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(v.error(
                    name.span(),
                    &format!("metrics[{}].name", index + 1),
                    format!(
                        "{value:?} is not a valid metric name: use letters, digits, '_', '-' and '.' \
                         (':' is reserved for the `NAME:errors` / `NAME:total` rows of data files)"
                    ),
                ));
            }
            Ok(value.clone())
        }
        None => Err(v.error(
            span.clone(),
            &format!("metrics[{}].name", index + 1),
            "is required in every [[metrics]] table",
        )),
    }
}

/// One metric being validated: errors name `metrics.NAME.KEY`.
struct Metric<'a> {
    v: &'a Validator<'a>,
    name: &'a str,
    kind: KindName,
}

impl Metric<'_> {
    fn field(&self, key: &str) -> String {
        format!("metrics.{}.{key}", self.name)
    }

    fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ProfileError {
        self.v.error(span, &self.field(key), message)
    }

    fn kind_label(&self) -> &'static str {
        match self.kind {
            KindName::Continuous => "continuous",
            KindName::Proportion => "proportion",
            KindName::Threshold => "threshold",
        }
    }

    /// Refuses `key` when it is present on a kind outside `kinds`: a `max_ratio` on a
    /// continuous metric would otherwise silently do nothing.
    fn only_for<T>(
        &self,
        key: &str,
        present: &Option<Spanned<T>>,
        kinds: &[KindName],
        allowed: &str,
    ) -> Result<(), ProfileError> {
        match present {
            Some(value) if !kinds.contains(&self.kind) => Err(self.error(
                value.span(),
                key,
                format!(
                    "applies only to {allowed} metrics, not to kind = \"{}\"",
                    self.kind_label()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The comparison and limit keys of the other kinds.
    fn keys_of_other_kinds(&self, raw: &RawMetric) -> Result<(), ProfileError> {
        use KindName::{Continuous, Proportion, Threshold};
        self.only_for(
            "direction",
            &raw.direction,
            &[Continuous, Proportion],
            "continuous and proportion",
        )?;
        self.only_for(
            "allowed_increase",
            &raw.allowed_increase,
            &[Continuous],
            "continuous",
        )?;
        self.only_for(
            "allowed_decrease",
            &raw.allowed_decrease,
            &[Continuous],
            "continuous",
        )?;
        self.only_for("max_ratio", &raw.max_ratio, &[Proportion], "proportion")?;
        self.only_for("min_ratio", &raw.min_ratio, &[Proportion], "proportion")?;
        self.only_for("max", &raw.max, &[Threshold], "threshold")?;
        self.only_for("min", &raw.min, &[Threshold], "threshold")?;
        self.only_for("statistic", &raw.statistic, &[Threshold], "threshold")?;
        let sampled = [Continuous, Threshold];
        self.only_for(
            "outliers",
            &raw.outliers,
            &sampled,
            "continuous and threshold",
        )?;
        self.only_for(
            "iqr_multiplier",
            &raw.iqr_multiplier,
            &sampled,
            "continuous and threshold",
        )
    }

    /// `query` for samples, `errors_query` and `total_query` (together) for counts: the
    /// metric's own PromQL keys.
    fn queries(&self, raw: &RawMetric) -> Result<(), ProfileError> {
        self.query_set("", &raw.query, &raw.errors_query, &raw.total_query)
    }

    /// The rules every set of queries follows; `prefix` is `""` for the metric's own
    /// keys and `queries.LANGUAGE.` for a language's table.
    fn query_set(
        &self,
        prefix: &str,
        query: &Option<Spanned<String>>,
        errors_query: &Option<Spanned<String>>,
        total_query: &Option<Spanned<String>>,
    ) -> Result<(), ProfileError> {
        let key = |name: &str| format!("{prefix}{name}");
        if self.kind == KindName::Proportion
            && let Some(query) = query
        {
            return Err(self.error(
                query.span(),
                &key("query"),
                "a proportion metric is counted with two queries: use `errors_query` and `total_query`",
            ));
        }
        let counted = [KindName::Proportion, KindName::Threshold];
        let allowed = "proportion and threshold";
        self.only_for(&key("errors_query"), errors_query, &counted, allowed)?;
        self.only_for(&key("total_query"), total_query, &counted, allowed)?;
        match (errors_query, total_query) {
            (Some(only), None) | (None, Some(only)) => {
                return Err(self.error(
                    only.span(),
                    &key(if errors_query.is_some() {
                        "total_query"
                    } else {
                        "errors_query"
                    }),
                    "`errors_query` and `total_query` go together: give both or neither",
                ));
            }
            _ => {}
        }
        if self.kind == KindName::Threshold
            && let (Some(_), Some(query)) = (errors_query, query)
        {
            return Err(self.error(
                query.span(),
                &key("query"),
                "give either `query` (samples) or `errors_query` and `total_query` (a rate), not both",
            ));
        }
        Ok(())
    }

    /// The `[metrics.queries.LANGUAGE]` tables: each a known language other than PromQL,
    /// each valid on its own, all counting or all sampling as the metric's own keys do
    /// (a threshold is on samples or on a rate whatever the source).
    fn other_queries(
        &self,
        raw: &RawMetric,
    ) -> Result<BTreeMap<QueryLanguage, MetricQueries>, ProfileError> {
        let mut result = BTreeMap::new();
        let Some(tables) = &raw.queries else {
            return Ok(result);
        };
        let known: Vec<&str> = QueryLanguage::ALL
            .iter()
            .filter(|language| **language != QueryLanguage::Prometheus)
            .map(|language| language.key())
            .collect();
        let own_shape = if raw.errors_query.is_some() {
            Some(true)
        } else {
            raw.query.as_ref().map(|_| false)
        };
        let mut shape: Option<(bool, String)> = own_shape.map(|counted| (counted, String::new()));
        for (name, table) in tables.get_ref() {
            let prefix = format!("queries.{}.", name.get_ref());
            let language = match QueryLanguage::from_key(name.get_ref()) {
                Some(QueryLanguage::Prometheus) => {
                    return Err(self.error(
                        name.span(),
                        &format!("queries.{}", name.get_ref()),
                        "PromQL goes in the metric's own `query`, `errors_query` and `total_query`",
                    ));
                }
                Some(language) => language,
                None => {
                    return Err(self.error(
                        name.span(),
                        &format!("queries.{}", name.get_ref()),
                        format!(
                            "is not a query language canary knows; known: {}",
                            known.join(", ")
                        ),
                    ));
                }
            };
            let queries = table.get_ref();
            self.query_set(
                &prefix,
                &queries.query,
                &queries.errors_query,
                &queries.total_query,
            )?;
            if queries.query.is_none() && queries.errors_query.is_none() {
                return Err(self.error(
                    table.span(),
                    &format!("queries.{}", name.get_ref()),
                    "has no query: give `query`, or `errors_query` and `total_query`",
                ));
            }
            let counted = queries.errors_query.is_some();
            if let Some(cumulative) = &queries.cumulative
                && *cumulative.get_ref()
                && !counted
            {
                return Err(self.error(
                    cumulative.span(),
                    &format!("{prefix}cumulative"),
                    "only applies to count data: give errors_query and total_query that return counters",
                ));
            }
            match &shape {
                Some((earlier, where_)) if *earlier != counted => {
                    let earlier_place = if where_.is_empty() {
                        "the metric's own queries".to_owned()
                    } else {
                        format!("[metrics.queries.{where_}]")
                    };
                    return Err(self.error(
                        table.span(),
                        &format!("queries.{}", name.get_ref()),
                        format!(
                            "{} while {earlier_place} {}: every language must measure the same thing",
                            if counted { "counts events" } else { "samples values" },
                            if *earlier { "count events" } else { "sample values" },
                        ),
                    ));
                }
                Some(_) => {}
                None => shape = Some((counted, name.get_ref().clone())),
            }
            result.insert(
                language,
                MetricQueries {
                    query: queries.query.as_ref().map(|q| q.get_ref().clone()),
                    errors_query: queries.errors_query.as_ref().map(|q| q.get_ref().clone()),
                    total_query: queries.total_query.as_ref().map(|q| q.get_ref().clone()),
                    cumulative: queries.cumulative.as_ref().is_some_and(|c| *c.get_ref()),
                },
            );
        }
        Ok(result)
    }

    /// `tails` and `bursts`, the sequential judge's checks: refused, not ignored, where
    /// they would not run. Returns the burst window.
    fn sequential_checks(
        &self,
        raw: &RawMetric,
        mode: JudgeMode,
    ) -> Result<Option<HumanDuration>, ProfileError> {
        self.only_for("tails", &raw.tails, &[KindName::Continuous], "continuous")?;
        self.only_for("bursts", &raw.bursts, &[KindName::Proportion], "proportion")?;
        if mode == JudgeMode::Fixed {
            let tails = raw
                .tails
                .as_ref()
                .filter(|t| *t.get_ref())
                .map(Spanned::span);
            let bursts = raw.bursts.as_ref().map(Spanned::span);
            for (key, present) in [("tails", tails), ("bursts", bursts)] {
                if let Some(key_span) = present {
                    return Err(self.error(
                        key_span,
                        key,
                        "is a check of the sequential judge and does not run with [judge] mode = \"fixed\": \
                         remove it or use mode = \"sequential\"",
                    ));
                }
            }
        }
        raw.bursts
            .as_ref()
            .map(|window| {
                HumanDuration::parse(window.get_ref())
                    .map_err(|message| self.error(window.span(), "bursts", message))
            })
            .transpose()
    }

    /// `cumulative = true` needs count queries.
    fn cumulative(&self, raw: &RawMetric) -> Result<(), ProfileError> {
        match &raw.cumulative {
            Some(cumulative)
                if *cumulative.get_ref()
                    && (raw.errors_query.is_none() || raw.total_query.is_none()) =>
            {
                Err(self.error(
                    cumulative.span(),
                    "cumulative",
                    "only applies to count data: give errors_query and total_query that return counters",
                ))
            }
            _ => Ok(()),
        }
    }

    fn direction(raw: &RawMetric) -> Direction {
        raw.direction
            .as_ref()
            .map_or(Direction::Increase, |d| *d.get_ref())
    }

    /// A tolerance as a fraction of the baseline, at least 0 (0 when absent).
    fn non_negative(&self, key: &str, value: &Option<Spanned<f64>>) -> Result<f64, ProfileError> {
        match value {
            Some(value) if !(value.get_ref().is_finite() && *value.get_ref() >= 0.0) => Err(self
                .error(
                    value.span(),
                    key,
                    format!(
                        "must be a fraction of the baseline at least 0 (0.1 = 10 %), got {}",
                        value.get_ref()
                    ),
                )),
            Some(value) => Ok(*value.get_ref()),
            None => Ok(0.0),
        }
    }

    fn continuous(&self, raw: &RawMetric) -> Result<MetricKind, ProfileError> {
        let allowed_increase = self.non_negative("allowed_increase", &raw.allowed_increase)?;
        let allowed_decrease = self.non_negative("allowed_decrease", &raw.allowed_decrease)?;
        if let Some(decrease) = &raw.allowed_decrease
            && allowed_decrease >= 1.0
        {
            return Err(self.error(
                decrease.span(),
                "allowed_decrease",
                format!(
                    "must be below 1 (a decrease of 100 % or more tolerates anything), got {allowed_decrease}"
                ),
            ));
        }
        Ok(MetricKind::Continuous(ContinuousKind {
            direction: Self::direction(raw),
            allowed_increase,
            allowed_decrease,
        }))
    }

    fn proportion(&self, raw: &RawMetric) -> Result<MetricKind, ProfileError> {
        let max_ratio = match &raw.max_ratio {
            Some(ratio) if !(ratio.get_ref().is_finite() && *ratio.get_ref() >= 1.0) => {
                return Err(self.error(
                    ratio.span(),
                    "max_ratio",
                    format!(
                        "must be a number at least 1 (1.5 = canary rate may reach baseline × 1.5), got {}",
                        ratio.get_ref()
                    ),
                ));
            }
            ratio => ratio.as_ref().map(|r| *r.get_ref()),
        };
        let min_ratio = match &raw.min_ratio {
            Some(ratio)
                if !(ratio.get_ref().is_finite()
                    && *ratio.get_ref() > 0.0
                    && *ratio.get_ref() <= 1.0) =>
            {
                return Err(self.error(
                    ratio.span(),
                    "min_ratio",
                    format!(
                        "must be a number above 0 and at most 1 (0.8 = canary rate may fall to baseline × 0.8), got {}",
                        ratio.get_ref()
                    ),
                ));
            }
            ratio => ratio.as_ref().map(|r| *r.get_ref()),
        };
        Ok(MetricKind::Proportion(ProportionKind {
            direction: Self::direction(raw),
            max_ratio,
            min_ratio,
        }))
    }

    fn threshold(&self, raw: &RawMetric, span: &Range<usize>) -> Result<MetricKind, ProfileError> {
        let finite = |key: &str, value: &Option<Spanned<f64>>| match value {
            Some(value) if !value.get_ref().is_finite() => Err(self.error(
                value.span(),
                key,
                format!("must be a finite number, got {}", value.get_ref()),
            )),
            value => Ok(value.as_ref().map(|x| *x.get_ref())),
        };
        let min = finite("min", &raw.min)?;
        let max = finite("max", &raw.max)?;
        match (min, max) {
            (None, None) => {
                return Err(self.error(
                    span.clone(),
                    "max",
                    "a threshold metric needs `max`, `min` or both",
                ));
            }
            (Some(low), Some(high)) if low > high => {
                return Err(self.error(
                    raw.min.as_ref().map_or(span.clone(), Spanned::span),
                    "min",
                    format!("must not exceed max ({low} > {high})"),
                ));
            }
            _ => {}
        }
        Ok(MetricKind::Threshold(ThresholdKind {
            statistic: raw
                .statistic
                .as_ref()
                .map_or(ThresholdStatistic::Mean, |s| *s.get_ref()),
            min,
            max,
        }))
    }

    fn min_samples(&self, raw: &RawMetric) -> Result<u64, ProfileError> {
        match &raw.min_samples {
            Some(count) if *count.get_ref() < 1 => Err(self.error(
                count.span(),
                "min_samples",
                format!("must be a whole number at least 1, got {}", count.get_ref()),
            )),
            Some(count) => Ok(*count.get_ref() as u64),
            None => Ok(default_min_samples(self.kind)),
        }
    }

    /// `severity`, or the older `critical = true`; both must agree when both are given.
    fn severity(&self, raw: &RawMetric) -> Result<Severity, ProfileError> {
        Ok(match (&raw.critical, &raw.severity) {
            (Some(critical), Some(severity)) => {
                let agrees = (*critical.get_ref()) == (*severity.get_ref() == Severity::Critical);
                if !agrees {
                    return Err(self.error(
                        critical.span(),
                        "critical",
                        format!(
                            "contradicts severity = \"{}\"; give one of `critical = true` or `severity = \"critical\" | \"warning\" | \"normal\"`",
                            severity.get_ref()
                        ),
                    ));
                }
                *severity.get_ref()
            }
            (Some(critical), None) if *critical.get_ref() => Severity::Critical,
            (_, Some(severity)) => *severity.get_ref(),
            _ => Severity::Normal,
        })
    }

    fn group(&self, raw: &RawMetric) -> Result<String, ProfileError> {
        match &raw.group {
            Some(group) if group.get_ref().trim().is_empty() => {
                Err(self.error(group.span(), "group", "must not be empty"))
            }
            Some(group) => Ok(group.get_ref().clone()),
            None => Ok("default".to_owned()),
        }
    }

    fn nan(&self, raw: &RawMetric) -> Result<(NanPolicy, f64), ProfileError> {
        let nan_policy = raw
            .nan_policy
            .as_ref()
            .map_or(NanPolicy::Drop, |p| *p.get_ref());
        let max_nan_fraction = match &raw.max_nan_fraction {
            Some(fraction) if !(0.0..=1.0).contains(fraction.get_ref()) => {
                return Err(self.error(
                    fraction.span(),
                    "max_nan_fraction",
                    format!("must be a fraction from 0 to 1, got {}", fraction.get_ref()),
                ));
            }
            Some(fraction) => *fraction.get_ref(),
            None => DEFAULT_MAX_NAN_FRACTION,
        };
        Ok((nan_policy, max_nan_fraction))
    }

    /// `[metrics.kayenta]` under `algorithm = "kayenta"`, where every metric is
    /// continuous and canary's own tolerance, NaN and outlier keys would be silently
    /// ignored (so they are refused); refused under canary's judge.
    fn kayenta(
        &self,
        raw: &mut RawMetric,
        algorithm: JudgeAlgorithm,
    ) -> Result<Option<KayentaMetric>, ProfileError> {
        let table = raw.kayenta.take();
        if algorithm == JudgeAlgorithm::Canary {
            return match table {
                Some(table) => Err(self.error(
                    table.span(),
                    "kayenta",
                    "applies only with [judge] algorithm = \"kayenta\"",
                )),
                None => Ok(None),
            };
        }
        if self.kind != KindName::Continuous {
            let span = raw.kind.as_ref().map_or(0..0, Spanned::span);
            return Err(self.error(
                span,
                "kind",
                format!(
                    "must be \"continuous\" with [judge] algorithm = \"kayenta\" (Kayenta compares the \
                     two sides' series of values; it has no {} metrics)",
                    self.kind_label()
                ),
            ));
        }
        let canary_only = [
            (
                "allowed_increase",
                raw.allowed_increase.as_ref().map(Spanned::span),
                "kayenta.allowed_increase (a mean ratio, e.g. 1.1)",
            ),
            (
                "allowed_decrease",
                raw.allowed_decrease.as_ref().map(Spanned::span),
                "kayenta.allowed_decrease (a mean ratio, e.g. 0.9)",
            ),
            (
                "nan_policy",
                raw.nan_policy.as_ref().map(Spanned::span),
                "kayenta.nan_strategy",
            ),
            (
                "max_nan_fraction",
                raw.max_nan_fraction.as_ref().map(Spanned::span),
                "kayenta.nan_strategy",
            ),
            (
                "outliers",
                raw.outliers.as_ref().map(Spanned::span),
                "kayenta.outlier_factor",
            ),
            (
                "iqr_multiplier",
                raw.iqr_multiplier.as_ref().map(Spanned::span),
                "kayenta.outlier_factor",
            ),
        ];
        for (key, span, instead) in canary_only {
            if let Some(span) = span {
                return Err(self.error(
                    span,
                    key,
                    format!(
                        "is canary's own judge setting and does nothing with [judge] algorithm = \"kayenta\"; \
                         use {instead}"
                    ),
                ));
            }
        }
        let Some(table) = table else {
            return Ok(Some(KayentaMetric::defaults(EffectMeasure::MeanRatio)));
        };
        let table: RawKayenta = table.into_inner();
        let measure = table
            .measure
            .as_ref()
            .map_or(EffectMeasure::MeanRatio, |m| *m.get_ref());
        let mut settings = KayentaMetric::defaults(measure);
        let gate = |key: &str, value: &Option<Spanned<f64>>, default: f64| match value {
            None => Ok(default),
            Some(value) => {
                let number = *value.get_ref();
                let valid = match measure {
                    EffectMeasure::MeanRatio => number.is_finite() && number > 0.0,
                    EffectMeasure::Cles => (0.0..=1.0).contains(&number),
                };
                if valid {
                    Ok(number)
                } else {
                    let expected = match measure {
                        EffectMeasure::MeanRatio => "a ratio of means above 0 (1 is no change)",
                        EffectMeasure::Cles => "a probability from 0 to 1 (0.5 is no change)",
                    };
                    Err(self.error(
                        value.span(),
                        &format!("kayenta.{key}"),
                        format!("must be {expected}, got {number}"),
                    ))
                }
            }
        };
        settings.allowed_increase = gate(
            "allowed_increase",
            &table.allowed_increase,
            settings.allowed_increase,
        )?;
        settings.allowed_decrease = gate(
            "allowed_decrease",
            &table.allowed_decrease,
            settings.allowed_decrease,
        )?;
        settings.critical_increase = gate(
            "critical_increase",
            &table.critical_increase,
            settings.critical_increase,
        )?;
        settings.critical_decrease = gate(
            "critical_decrease",
            &table.critical_decrease,
            settings.critical_decrease,
        )?;
        settings.must_have_data = table.must_have_data.is_some_and(|b| *b.get_ref());
        settings.muted = table.muted.is_some_and(|b| *b.get_ref());
        settings.nan_strategy = table
            .nan_strategy
            .map_or(KayentaNanStrategy::Remove, Spanned::into_inner);
        settings.outlier_factor = match table.outlier_factor {
            Some(factor) if !(factor.get_ref().is_finite() && *factor.get_ref() > 0.0) => {
                return Err(self.error(
                    factor.span(),
                    "kayenta.outlier_factor",
                    format!(
                        "must be a number above 0 (Kayenta's default is 3), got {}",
                        factor.get_ref()
                    ),
                ));
            }
            factor => factor.map(Spanned::into_inner),
        };
        Ok(Some(settings))
    }

    fn outliers(&self, raw: &RawMetric) -> Result<OutlierPolicy, ProfileError> {
        match (
            raw.outliers.as_ref().map(|o| *o.get_ref()),
            &raw.iqr_multiplier,
        ) {
            (Some(OutlierMethodName::Iqr), multiplier) => {
                let multiplier = match multiplier {
                    Some(k) if !(k.get_ref().is_finite() && *k.get_ref() > 0.0) => {
                        return Err(self.error(
                            k.span(),
                            "iqr_multiplier",
                            format!(
                                "must be a number above 0 (usually 1.5), got {}",
                                k.get_ref()
                            ),
                        ));
                    }
                    Some(k) => *k.get_ref(),
                    None => DEFAULT_IQR_MULTIPLIER,
                };
                Ok(OutlierPolicy::Iqr { multiplier })
            }
            (_, Some(k)) => Err(self.error(
                k.span(),
                "iqr_multiplier",
                "only applies with outliers = \"iqr\"",
            )),
            _ => Ok(OutlierPolicy::Keep),
        }
    }
}
