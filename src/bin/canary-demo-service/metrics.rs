//! The service's counters per pod and their Prometheus text exposition (format 0.0.4),
//! written by hand: a few loops, and every series is present from the first scrape.
//! Pure.

use std::fmt::Write;

use crate::traffic::Pod;

/// Upper bounds of the latency histogram's buckets, seconds (`+Inf` is implied): dense
/// between 0.11 s and 0.5 s, where the p95 of the demo's latency lies, so
/// `histogram_quantile` interpolates over 10 ms instead of 100 ms.
pub fn latency_buckets() -> Vec<f64> {
    let mut bounds = vec![0.01, 0.025, 0.05, 0.075, 0.1];
    bounds.extend((11..=50).map(|hundredths| f64::from(hundredths) / 100.0));
    bounds.extend([0.6, 0.75, 1.0, 1.5, 2.0, 5.0]);
    bounds
}

/// What one pod has served so far.
#[derive(Debug, Clone)]
pub struct PodCounters {
    /// Requests answered 200.
    pub ok: u64,
    /// Requests answered 500.
    pub errors: u64,
    /// Requests per latency bucket, not cumulative; the last slot is `+Inf`.
    pub bucket_counts: Vec<u64>,
    /// Sum of latencies, seconds.
    pub latency_sum: f64,
    /// CPU seconds used.
    pub cpu_seconds: f64,
    /// Business events (one per request when a business set is exported).
    pub business_events: u64,
    /// Business events that failed.
    pub business_failures: u64,
}

impl PodCounters {
    /// Zero counters for a histogram with `bucket_count` finite buckets.
    pub fn new(bucket_count: usize) -> Self {
        Self {
            ok: 0,
            errors: 0,
            bucket_counts: vec![0; bucket_count + 1],
            latency_sum: 0.0,
            cpu_seconds: 0.0,
            business_events: 0,
            business_failures: 0,
        }
    }

    /// Records one request.
    pub fn record(&mut self, bounds: &[f64], latency: f64, failed: bool) {
        if failed {
            self.errors += 1;
        } else {
            self.ok += 1;
        }
        // `le` buckets: the first bound at or above the latency.
        let slot = bounds.partition_point(|bound| *bound < latency);
        self.bucket_counts[slot] += 1;
        self.latency_sum += latency;
    }

    /// Records one business event.
    pub fn record_business(&mut self, failed: bool) {
        self.business_events += 1;
        if failed {
            self.business_failures += 1;
        }
    }

    /// Requests served.
    pub fn total(&self) -> u64 {
        self.ok + self.errors
    }
}

/// Renders every metric of every pod. `memory_bytes[i]` is pod `i`'s resident memory at
/// this scrape.
pub fn render(
    pods: &[Pod],
    counters: &[PodCounters],
    memory_bytes: &[f64],
    bounds: &[f64],
    canary_percent: f64,
) -> String {
    let mut text = String::with_capacity(64 * 1024);
    let labels = |pod: &Pod| format!("track=\"{}\",pod=\"{}\"", pod.track.name(), pod.name);

    text.push_str("# HELP http_requests_total Requests served, by track, pod and status code.\n");
    text.push_str("# TYPE http_requests_total counter\n");
    for (pod, counter) in pods.iter().zip(counters) {
        let labels = labels(pod);
        let _ = writeln!(
            text,
            "http_requests_total{{{labels},code=\"200\"}} {}",
            counter.ok
        );
        let _ = writeln!(
            text,
            "http_requests_total{{{labels},code=\"500\"}} {}",
            counter.errors
        );
    }

    write_histogram(
        &mut text,
        "http_request_duration_seconds",
        pods,
        counters,
        bounds,
    );

    text.push_str("# HELP process_cpu_seconds_total CPU time used, by track and pod.\n");
    text.push_str("# TYPE process_cpu_seconds_total counter\n");
    for (pod, counter) in pods.iter().zip(counters) {
        let _ = writeln!(
            text,
            "process_cpu_seconds_total{{{}}} {}",
            labels(pod),
            counter.cpu_seconds
        );
    }

    text.push_str("# HELP process_resident_memory_bytes Resident memory, by track and pod.\n");
    text.push_str("# TYPE process_resident_memory_bytes gauge\n");
    for (pod, memory) in pods.iter().zip(memory_bytes) {
        let _ = writeln!(
            text,
            "process_resident_memory_bytes{{{}}} {}",
            labels(pod),
            memory.round()
        );
    }

    text.push_str(
        "# HELP demo_flag_canary_percent The canary's share of traffic the flag gives, percent.\n",
    );
    text.push_str("# TYPE demo_flag_canary_percent gauge\n");
    let _ = writeln!(text, "demo_flag_canary_percent {canary_percent}");
    text
}

/// Appends the latency histogram `name` (`_bucket`, `_sum`, `_count`) of every pod.
pub fn write_histogram(
    text: &mut String,
    name: &str,
    pods: &[Pod],
    counters: &[PodCounters],
    bounds: &[f64],
) {
    let _ = writeln!(text, "# HELP {name} Request latency, by track and pod.");
    let _ = writeln!(text, "# TYPE {name} histogram");
    for (pod, counter) in pods.iter().zip(counters) {
        let labels = format!("track=\"{}\",pod=\"{}\"", pod.track.name(), pod.name);
        let mut cumulative = 0;
        for (bound, count) in bounds.iter().zip(&counter.bucket_counts) {
            cumulative += count;
            let _ = writeln!(
                text,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = counter.total();
        let _ = writeln!(text, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
        let _ = writeln!(text, "{name}_sum{{{labels}}} {}", counter.latency_sum);
        let _ = writeln!(text, "{name}_count{{{labels}}} {total}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix;
    use crate::traffic::build_pods;

    #[test]
    fn the_buckets_are_dense_around_the_p95() {
        let bounds = latency_buckets();
        assert_eq!(bounds.len(), 51);
        assert!(bounds.contains(&0.23) && bounds.contains(&0.5) && bounds.contains(&5.0));
        assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_request_lands_in_the_first_bucket_at_or_above_its_latency() {
        let bounds = latency_buckets();
        let mut counter = PodCounters::new(bounds.len());
        counter.record(&bounds, 0.1, false);
        counter.record(&bounds, 0.105, true);
        counter.record(&bounds, 9.0, false);
        assert_eq!(counter.bucket_counts[4], 1); // le="0.1"
        assert_eq!(counter.bucket_counts[5], 1); // le="0.11"
        assert_eq!(counter.bucket_counts[bounds.len()], 1); // +Inf
        assert_eq!((counter.ok, counter.errors, counter.total()), (2, 1, 3));
    }

    #[test]
    fn every_series_is_present_at_zero_before_any_request() {
        let bounds = latency_buckets();
        let pods = build_pods(2, 0.03, &mut SplitMix::new(3));
        let counters = vec![PodCounters::new(bounds.len()); pods.len()];
        let memory = vec![180e6; pods.len()];
        let text = render(&pods, &counters, &memory, &bounds, 0.0);
        for track in ["stable", "baseline", "canary"] {
            for pod in 0..2 {
                let labels = format!("track=\"{track}\",pod=\"{track}-{pod}\"");
                for code in ["200", "500"] {
                    let line = format!("http_requests_total{{{labels},code=\"{code}\"}} 0\n");
                    assert!(text.contains(&line), "missing {line}");
                }
                for le in ["0.01", "0.11", "0.25", "1", "+Inf"] {
                    let line =
                        format!("http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} 0\n");
                    assert!(text.contains(&line), "missing {line}");
                }
                assert!(text.contains(&format!(
                    "http_request_duration_seconds_count{{{labels}}} 0\n"
                )));
                assert!(text.contains(&format!("process_cpu_seconds_total{{{labels}}} 0\n")));
                assert!(text.contains(&format!(
                    "process_resident_memory_bytes{{{labels}}} 180000000\n"
                )));
            }
        }
        assert!(text.contains("demo_flag_canary_percent 0\n"));
        let samples = text.lines().filter(|line| !line.starts_with('#')).count();
        // Per pod: 2 codes + 52 buckets + sum + count + cpu + memory; then the gauge.
        assert_eq!(samples, 6 * (2 + 52 + 2 + 2) + 1);
    }

    #[test]
    fn buckets_are_cumulative_in_the_text() {
        let bounds = latency_buckets();
        let pods = build_pods(1, 0.0, &mut SplitMix::new(3));
        let mut counters = vec![PodCounters::new(bounds.len()); pods.len()];
        counters[2].record(&bounds, 0.05, false);
        counters[2].record(&bounds, 0.3, true);
        let text = render(&pods, &counters, &[180e6; 3], &bounds, 25.0);
        let labels = "track=\"canary\",pod=\"canary-0\"";
        for (le, count) in [
            ("0.025", 0),
            ("0.05", 1),
            ("0.29", 1),
            ("0.3", 2),
            ("+Inf", 2),
        ] {
            let line =
                format!("http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}\n");
            assert!(text.contains(&line), "missing {line}");
        }
        assert!(text.contains(&format!("http_requests_total{{{labels},code=\"500\"}} 1\n")));
        assert!(text.contains("demo_flag_canary_percent 25\n"));
    }
}
