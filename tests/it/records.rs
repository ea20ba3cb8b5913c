//! Records written by an earlier canary still load: `fixtures/records/v1.sqlite` was
//! written by canary's SQLite store before looks and runner snapshots were typed (two
//! analyses of `tests/it/worker.rs`'s profile: one promoted, one rolled back). Opened by
//! today's store, each analysis's snapshot and looks read back as typed records, and its
//! report (JSON and HTML) is byte for byte the one the earlier canary built
//! (`fixtures/records/v1-<flag>.report.{json,html}`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use canary::report::analysis::{AnalysisReport, ChartData};
use canary::report::html;
use canary::store::{Analysis, Store, StoreConfig};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/records")
        .join(name)
}

/// The fixture database, copied so that opening it (migrations, WAL) leaves it as it is.
async fn v1_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let copy = dir.path().join("v1.sqlite");
    std::fs::copy(fixture("v1.sqlite"), &copy).unwrap();
    StoreConfig::new(copy.to_str().unwrap())
        .build()
        .await
        .expect("today's store opens the v1 database")
}

async fn analyses(store: &dyn Store) -> Vec<Analysis> {
    let mut analyses = store.list_analyses(None, 100, None).await.unwrap().items;
    analyses.sort_by(|a, b| a.flag.cmp(&b.flag));
    analyses
}

/// The report of `analysis` as `GET /v1/analyses/{id}/report.json` and `.../report`
/// serve it.
async fn reports(store: &dyn Store, analysis: &Analysis) -> (String, String) {
    let looks = store.list_looks(analysis.id).await.unwrap();
    let actuations = store.list_actuations(analysis.id).await.unwrap();
    let audit = store.audit_log(analysis.id).await.unwrap();
    let report = AnalysisReport::from_analysis(analysis, &looks, &actuations, &audit);
    let json = serde_json::to_string_pretty(&report).unwrap();
    let page = html::render(&report, &ChartData::from_looks(&looks));
    (json, page)
}

#[tokio::test]
async fn reports_of_v1_records_are_byte_for_byte_the_ones_v1_built() {
    let dir = tempfile::tempdir().unwrap();
    let store = v1_store(&dir).await;
    let analyses = analyses(store.as_ref()).await;
    assert_eq!(analyses.len(), 2);
    for analysis in &analyses {
        let (json, page) = reports(store.as_ref(), analysis).await;
        let name = |ext: &str| format!("v1-{}.report.{ext}", analysis.flag);
        if std::env::var_os("CANARY_BLESS_RECORDS").is_some() {
            std::fs::write(fixture(&name("json")), &json).unwrap();
            std::fs::write(fixture(&name("html")), &page).unwrap();
        }
        let expected_json = std::fs::read_to_string(fixture(&name("json"))).unwrap();
        let expected_page = std::fs::read_to_string(fixture(&name("html"))).unwrap();
        assert!(json == expected_json, "{} differs:\n{json}", name("json"));
        assert!(page == expected_page, "{} differs", name("html"));
    }
}
