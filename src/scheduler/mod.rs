//! The rollout runner: owns a rollout's interval loop — read the flag, fetch, decide
//! (pure: `look`, `decide`), apply the planned flag change, record — and is the only
//! writer of flags (through a [`FlagWriter`]). [`records`] are what it records.
//!
//! [`RolloutRunner::take_look`] is one analysis at a given analysis time; it is public so
//! tests and simulations drive a rollout look by look without sleeping.
//! [`RolloutRunner::run`] is the loop a worker runs: wait for the next look on a
//! [`Clock`], step, repeat until the rollout ends.
//!
//! How repeated looks are kept from becoming a false-rollback machine (see
//! ARCHITECTURE.md): every look judges at its own share of the rollout's error budget
//! ([`crate::domain::plan::RolloutPlan::look_alpha`]), split between the judge and the statistical
//! triggers, so the chance that *any* look of a healthy rollout fails statistically
//! stays within `error_budget`; and a statistical rollback can be made to need
//! `consecutive_failures` failing looks in a row.

pub mod clock;
mod decide;
pub mod executions;
mod fetch;
mod look;
pub mod ownership;
pub mod records;
mod registry;
pub mod retention;
mod rollout;
mod runner;
mod scopes;
pub mod worker;
pub mod writes;

pub use self::clock::{Clock, CompressedClock, ManualClock, SystemClock};
pub use self::executions::{Executor, ExecutorOptions, WindowRequest, WindowResult};
pub use self::fetch::{check_queries, fetch_window, look_step, preflight};
pub use self::records::{Decision, Look, RollingBack, RolloutStatus, RunnerState};
pub use self::registry::Registry;
pub use self::retention::{PruneOptions, Pruner};
pub use self::rollout::{Actuation, Override, Rollout, RunError, WorkerError};
pub use self::runner::RolloutRunner;
pub use self::scopes::Scopes;
pub use self::worker::{Worker, WorkerOptions};
pub use self::writes::{DirectWrites, FlagWriter, WriteError};
