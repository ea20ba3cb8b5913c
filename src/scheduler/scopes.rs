//! How queries select the baseline and the canary.

use crate::sources::Side;

/// How queries select each side, and which labels differ by design between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Scopes {
    /// Label matchers for the baseline, e.g. `track="baseline"`.
    pub baseline: String,
    /// Label matchers for the canary, e.g. `track="canary"`.
    pub canary: String,
    /// Labels ignored when pairing baseline and canary series (`track`, `pod`, ...).
    pub scope_labels: Vec<String>,
}

impl Scopes {
    /// The scopes for two sets of label matchers, ignoring when pairing series the labels
    /// the matchers name (`track="canary", version=~"2.*"` → `track`, `version`): the
    /// labels that differ between the sides by design.
    pub fn from_matchers(baseline: &str, canary: &str) -> Self {
        let mut scope_labels = label_names(baseline);
        scope_labels.extend(label_names(canary));
        scope_labels.sort();
        scope_labels.dedup();
        Self {
            baseline: baseline.to_owned(),
            canary: canary.to_owned(),
            scope_labels,
        }
    }

    pub(super) fn for_side(&self, side: Side) -> &str {
        match side {
            Side::Baseline => &self.baseline,
            Side::Canary => &self.canary,
        }
    }
}

/// The label names in a scope's matchers.
fn label_names(scope: &str) -> Vec<String> {
    scope
        .split(',')
        .filter_map(|matcher| {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}
