//! Stored rows read into records, once for both databases.
//!
//! The two stores keep the same columns with two differences: SQLite keeps ids as text
//! and lists and JSON as JSON text, PostgreSQL as `uuid`, `text[]` and `jsonb`. Each
//! store implements [`StoredRow`] for its row type (the primitive columns through
//! [`primitive_columns!`], the three that differ by hand); everything that turns rows
//! into analyses, flag changes, audit entries, pages and claims is written here once.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::look_body;
use super::model::{
    ActuationRecord, Analysis, AnalysisState, AnalysisSummary, AuditEntry, Execution, LookRecord,
    Page, Snapshot, StoreError,
};
use super::shared::{format_cursor, from_millis, parse_stored, to_index};

/// One row of a store's query, read column by column.
pub(crate) trait StoredRow {
    /// A `TEXT NOT NULL` column.
    fn text(&self, column: &str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    /// An integer (`BIGINT`) column.
    fn integer(&self, column: &str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError>;
    /// A `double precision` column.
    fn real(&self, column: &str) -> Result<f64, StoreError>;
    /// A nullable `double precision` column.
    fn optional_real(&self, column: &str) -> Result<Option<f64>, StoreError>;
    /// A boolean column.
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;
    /// A nullable `BLOB` / `bytea` column.
    fn optional_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// An id: text in SQLite, `uuid` in PostgreSQL.
    fn uuid(&self, column: &str) -> Result<Uuid, StoreError>;
    /// A list of strings: JSON text in SQLite, `text[]` in PostgreSQL.
    fn string_list(&self, column: &str) -> Result<Vec<String>, StoreError>;
    /// A JSON document: text in SQLite, `jsonb` in PostgreSQL.
    fn json(&self, column: &str) -> Result<serde_json::Value, StoreError>;
}

/// The [`StoredRow`] methods whose column types both databases share, for an `impl`
/// block of a `sqlx::Row` type.
macro_rules! primitive_columns {
    () => {
        fn text(&self, column: &str) -> Result<String, StoreError> {
            self.try_get(column).map_err(database_error)
        }
        fn optional_text(&self, column: &str) -> Result<Option<String>, StoreError> {
            self.try_get(column).map_err(database_error)
        }
        fn integer(&self, column: &str) -> Result<i64, StoreError> {
            self.try_get(column).map_err(database_error)
        }
        fn optional_integer(&self, column: &str) -> Result<Option<i64>, StoreError> {
            self.try_get(column).map_err(database_error)
        }
        fn real(&self, column: &str) -> Result<f64, StoreError> {
            self.try_get(column).map_err(database_error)
        }
        fn optional_real(&self, column: &str) -> Result<Option<f64>, StoreError> {
            self.try_get(column).map_err(database_error)
        }
        fn boolean(&self, column: &str) -> Result<bool, StoreError> {
            self.try_get(column).map_err(database_error)
        }
        fn optional_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.try_get(column).map_err(database_error)
        }
    };
}
pub(crate) use primitive_columns;

/// The analysis in a row selected with the stores' `analysis_columns!()`.
pub(crate) fn analysis_from_row(row: &impl StoredRow) -> Result<Analysis, StoreError> {
    Ok(Analysis {
        id: row.uuid("id")?,
        profile_name: row.text("profile_name")?,
        profile_text: row.text("profile_text")?,
        flag: row.text("flag")?,
        source: row.text("source")?,
        actuator: row.text("actuator")?,
        baseline_scope: row.text("baseline_scope")?,
        canary_scope: row.text("canary_scope")?,
        dry_run: row.boolean("dry_run")?,
        start_at: row.optional_integer("start_at_ms")?.map(from_millis),
        state: parse_stored(&row.text("state")?)?,
        current_stage: to_index(row.optional_integer("current_stage")?, "current_stage")?,
        traffic: row.optional_real("traffic")?,
        latest_verdict: row
            .optional_text("latest_verdict")?
            .map(|verdict| parse_stored(&verdict))
            .transpose()?,
        reasons: row.string_list("reasons")?,
        runner_state: Snapshot::from_stored(row.json("runner_state")?),
        next_look_at: row.optional_integer("next_look_at_ms")?.map(from_millis),
        version: row.integer("version")?,
        lease_owner: row.optional_text("lease_owner")?,
        lease_expires_at: row
            .optional_integer("lease_expires_at_ms")?
            .map(from_millis),
        created_at: from_millis(row.integer("created_at_ms")?),
        updated_at: from_millis(row.integer("updated_at_ms")?),
        requested_action: row
            .optional_text("requested_action")?
            .map(|action| parse_stored(&action))
            .transpose()?,
        owner: row.optional_text("owner")?,
        adopt: row.boolean("adopt")?,
        submit_key: row.optional_text("submit_key")?,
    })
}

/// The summary in a row selected with the stores' `summary_columns!()`.
pub(crate) fn summary_from_row(row: &impl StoredRow) -> Result<AnalysisSummary, StoreError> {
    Ok(AnalysisSummary {
        id: row.uuid("id")?,
        profile_name: row.text("profile_name")?,
        profile_text: row.text("profile_text")?,
        flag: row.text("flag")?,
        dry_run: row.boolean("dry_run")?,
        start_at: row.optional_integer("start_at_ms")?.map(from_millis),
        state: parse_stored(&row.text("state")?)?,
        current_stage: to_index(row.optional_integer("current_stage")?, "current_stage")?,
        traffic: row.optional_real("traffic")?,
        latest_verdict: row
            .optional_text("latest_verdict")?
            .map(|verdict| parse_stored(&verdict))
            .transpose()?,
        reasons: row.string_list("reasons")?,
        next_look_at: row.optional_integer("next_look_at_ms")?.map(from_millis),
        version: row.integer("version")?,
        created_at: from_millis(row.integer("created_at_ms")?),
        updated_at: from_millis(row.integer("updated_at_ms")?),
        requested_action: row
            .optional_text("requested_action")?
            .map(|action| parse_stored(&action))
            .transpose()?,
    })
}

/// The execution in a row selected with the stores' `execution_columns!()`.
pub(crate) fn execution_from_row(row: &impl StoredRow) -> Result<Execution, StoreError> {
    Ok(Execution {
        id: row.uuid("id")?,
        kind: row.text("kind")?,
        key: row.optional_text("key")?,
        profile_name: row.text("profile_name")?,
        profile_text: row.text("profile_text")?,
        source: row.text("source")?,
        request: row.json("request")?,
        state: parse_stored(&row.text("state")?)?,
        result: row.json("result")?,
        error: row.optional_text("error")?,
        attempts: u32::try_from(row.integer("attempts")?)
            .map_err(|_| StoreError::Corrupt("execution attempts out of range".to_owned()))?,
        due_at: from_millis(row.integer("due_at_ms")?),
        lease_owner: row.optional_text("lease_owner")?,
        lease_expires_at: row
            .optional_integer("lease_expires_at_ms")?
            .map(from_millis),
        created_at: from_millis(row.integer("created_at_ms")?),
        updated_at: from_millis(row.integer("updated_at_ms")?),
        finished_at: row.optional_integer("finished_at_ms")?.map(from_millis),
    })
}

/// The flag change in a row selected with the stores' `actuation_columns!()`.
pub(crate) fn actuation_from_row(row: &impl StoredRow) -> Result<ActuationRecord, StoreError> {
    Ok(ActuationRecord {
        analysis_id: row.uuid("analysis_id")?,
        idempotency_key: row.text("idempotency_key")?,
        action: row.text("action")?,
        target: row.real("target")?,
        state: parse_stored(&row.text("state")?)?,
        detail: row.optional_text("detail")?,
        at: from_millis(row.integer("at_ms")?),
        completed_at: row.optional_integer("completed_at_ms")?.map(from_millis),
    })
}

/// The look in a row of `looks` (selected with `body` and `body_zlib`): the deflated
/// body when there is one, else the JSON of a look written before compact bodies.
pub(crate) fn look_from_row(row: &impl StoredRow) -> Result<LookRecord, StoreError> {
    Ok(LookRecord {
        analysis_id: row.uuid("analysis_id")?,
        look: u64::try_from(row.integer("look")?)
            .map_err(|e| StoreError::Corrupt(format!("look number: {e}")))?,
        at: from_millis(row.integer("at_ms")?),
        stage_index: to_index(Some(row.integer("stage_index")?), "stage_index")?
            .unwrap_or_default(),
        verdict: parse_stored(&row.text("verdict")?)?,
        decision: row.text("decision")?,
        body: match row.optional_bytes("body_zlib")? {
            Some(bytes) => look_body::decode_look(&bytes)?,
            None => look_body::read_look(row.json("body")?)?,
        },
    })
}

/// The audit entry in a row of `audit_log`.
pub(crate) fn audit_entry_from_row(row: &impl StoredRow) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        analysis_id: row.uuid("analysis_id")?,
        actor: row.text("actor")?,
        action: parse_stored(&row.text("action")?)?,
        reason: row.text("reason")?,
        from_state: parse_stored(&row.text("from_state")?)?,
        to_state: parse_stored(&row.text("to_state")?)?,
        at: from_millis(row.integer("at_ms")?),
    })
}

/// Every state with its count, from rows of `state, COUNT(*) AS n` (states without
/// analyses count 0).
pub(crate) fn counts_from_rows<R: StoredRow>(
    rows: &[R],
) -> Result<BTreeMap<AnalysisState, u64>, StoreError> {
    let mut counts: BTreeMap<_, _> = AnalysisState::ALL.into_iter().map(|s| (s, 0)).collect();
    for row in rows {
        let state: AnalysisState = parse_stored(&row.text("state")?)?;
        counts.insert(state, u64::try_from(row.integer("n")?).unwrap_or_default());
    }
    Ok(counts)
}

/// A page of analyses from rows fetched with `LIMIT limit + 1` (the extra row says that
/// there is a next page).
pub(crate) fn page_from_rows<R: StoredRow>(
    rows: &[R],
    limit: i64,
) -> Result<Page<Analysis>, StoreError> {
    let mut items = Vec::with_capacity(rows.len());
    let mut last_seq = 0;
    for row in rows
        .iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
    {
        items.push(analysis_from_row(row)?);
        last_seq = row.integer("seq")?;
    }
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    Ok(Page {
        items,
        next_cursor: more.then(|| format_cursor(last_seq)),
    })
}

/// Claimed analyses, most overdue first: `RETURNING` gives rows in no promised order.
pub(crate) fn sorted_claims<R: StoredRow>(rows: &[R]) -> Result<Vec<Analysis>, StoreError> {
    let mut claimed = rows
        .iter()
        .map(|row| Ok((row.integer("seq")?, analysis_from_row(row)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    claimed.sort_by(|(seq_a, a), (seq_b, b)| {
        let due = |x: &Analysis| x.next_look_at.unwrap_or(f64::NEG_INFINITY);
        due(a).total_cmp(&due(b)).then(seq_a.cmp(seq_b))
    });
    Ok(claimed.into_iter().map(|(_, analysis)| analysis).collect())
}
