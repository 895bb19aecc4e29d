//! The decide step of apply: a command, read against the current views, becomes the events it
//! causes or a [`pb::Rejection`]. Deterministic: time and ids come from the entry's stamp.
//!
//! This file only dispatches, one line per command; each area keeps its transitions in its own
//! file (`lrp.rs`, `instances.rs`, `cells.rs`, `domains.rs`, `tasks.rs`, `runs.rs`, `receptor.rs`, `tokens.rs`, `cf.rs`, `cf_manifest.rs`). To add a command: a message in
//! `log.proto`, one line here, one small function in the area's file, a fold arm in
//! `state_machine/fold.rs` for any new event, and a case in the replay property test.

mod cells;
mod cf;
mod cf_manifest;
mod cf_rollout;
mod domains;
mod events;
mod instances;
mod lrp;
mod overlay;
mod receptor;
mod runs;
mod tasks;
#[cfg(test)]
mod tests;
mod tokens;

use super::ids::IdGen;
use crate::pb;
use pb::RejectionKind;

pub use cf::{instance_not_found as cf_instance_not_found, not_found as cf_not_found, processes_of as cf_processes_of};
pub use cf_rollout::due as cf_rollout_due;
pub use events::unclaimed;
pub use instances::index_not_found;
pub use lrp::{cf_owner, not_found};
pub use receptor::not_found as task_not_found;

/// What decide reads. Implemented by the sled views and by in-memory fakes in tests.
pub trait ViewRead {
    type Error;
    fn desired(&self, process_guid: &str) -> Result<Option<pb::DesiredLrp>, Self::Error>;
    /// Every actual of the process, in index order.
    fn actuals(&self, process_guid: &str) -> Result<Vec<pb::ActualLrp>, Self::Error>;
    fn actual(&self, process_guid: &str, index: u32) -> Result<Option<pb::ActualLrp>, Self::Error>;
    fn cell(&self, cell_id: &str) -> Result<Option<pb::Cell>, Self::Error>;
    fn task_definition(&self, definition_id: &str) -> Result<Option<pb::TaskDefinition>, Self::Error>;
    /// The id of the definition holding `alias`, if any.
    fn task_definition_by_alias(&self, alias: &str) -> Result<Option<String>, Self::Error>;
    /// Every registered cell.
    fn cells(&self) -> Result<Vec<pb::Cell>, Self::Error>;
    fn task_run(&self, run_id: &str) -> Result<Option<pb::TaskRun>, Self::Error>;
    /// The runs on a cell now (PENDING or RUNNING), in run_id order.
    fn task_runs_on_cell(&self, cell_id: &str) -> Result<Vec<pb::TaskRun>, Self::Error>;
    fn token_revocation(&self, jti: &str) -> Result<Option<pb::TokenRevocation>, Self::Error>;
    /// Up to `max` revocations that expire at or before `now_ns`, earliest first.
    fn token_revocations_expired(&self, now_ns: i64, max: usize) -> Result<Vec<pb::TokenRevocation>, Self::Error>;
    fn cf_organization(&self, guid: &str) -> Result<Option<pb::CfOrganization>, Self::Error>;
    fn cf_space(&self, guid: &str) -> Result<Option<pb::CfSpace>, Self::Error>;
    fn cf_app(&self, guid: &str) -> Result<Option<pb::CfApp>, Self::Error>;
    fn cf_process(&self, guid: &str) -> Result<Option<pb::CfProcess>, Self::Error>;
    /// The guid of the resource of `kind` named `name` under `parent` (a process: its type).
    fn cf_named(&self, kind: pb::CfKind, parent: &str, name: &str) -> Result<Option<String>, Self::Error>;
    /// The children of a CF resource (kind, guid), in guid order.
    fn cf_children(&self, parent: &str) -> Result<Vec<(pb::CfKind, String)>, Self::Error>;
}

/// The events a command causes, or why it was refused.
pub type Decision = Result<Vec<pb::Event>, pb::Rejection>;

pub fn reject(kind: RejectionKind, message: impl Into<String>) -> pb::Rejection {
    pb::Rejection {
        kind: kind as i32,
        message: message.into(),
    }
}

/// What every transition gets from the entry: the leader's time and the entry's id generator.
pub struct Ctx {
    pub now: i64,
    pub ids: IdGen,
}

/// Decides one command. The outer `Result` is a read failure of the views (fatal); the inner
/// one is the business outcome.
pub fn decide<V: ViewRead>(view: &V, stamp: &pb::Stamp, command: &pb::Command) -> Result<Decision, V::Error> {
    use pb::command::Kind;
    let cx = &mut Ctx {
        now: stamp.time_unix_ns,
        ids: IdGen::new(stamp),
    };
    match &command.kind {
        None => Ok(Err(reject(
            RejectionKind::UnknownCommand,
            "the entry carries no command this version knows",
        ))),
        // Receptor's LRP writes: refused on an LRP that runs a CF process (CF owns it)
        Some(Kind::DesireLrp(c)) => {
            let guid = c.desired_lrp.as_ref().map_or("", |d| d.process_guid.as_str());
            lrp::unless_cf_owned(view, guid, || lrp::desire(view, c, cx))
        }
        Some(Kind::UpdateDesiredLrp(c)) => lrp::unless_cf_owned(view, &c.process_guid, || lrp::update(view, c, cx)),
        Some(Kind::RemoveDesiredLrp(c)) => lrp::unless_cf_owned(view, &c.process_guid, || lrp::remove(view, c)),
        Some(Kind::RetireActualLrp(c)) => instances::retire(view, c, cx),
        Some(Kind::PlaceActualLrps(c)) => instances::place(view, c, cx),
        Some(Kind::ReportActualLrps(c)) => instances::report(view, c, cx),
        Some(Kind::ConvergeLrps(c)) => instances::converge(view, c, cx),
        Some(Kind::RegisterCell(c)) => Ok(cells::register(c, cx)),
        Some(Kind::RemoveCell(c)) => cells::remove(view, c, cx),
        Some(Kind::BumpFreshDomain(c)) => Ok(domains::bump(c, cx)),
        Some(Kind::CreateTaskDefinition(c)) => tasks::create_definition(view, c, cx),
        Some(Kind::UpdateTaskDefinition(c)) => tasks::update_definition(view, c, cx),
        Some(Kind::DeleteTaskDefinition(c)) => tasks::delete_definition(view, c),
        Some(Kind::ExecuteTask(c)) => tasks::execute(view, c, cx),
        Some(Kind::PlaceTaskRuns(c)) => runs::place(view, c),
        Some(Kind::ReportTaskRuns(c)) => runs::report(view, c, cx),
        Some(Kind::StopTaskRun(c)) => runs::stop(view, c, cx),
        Some(Kind::DesireTask(c)) => receptor::desire(view, c, cx),
        Some(Kind::ResolveTask(c)) => receptor::resolve(view, c),
        Some(Kind::MarkTaskResolving(c)) => receptor::mark_resolving(view, c),
        Some(Kind::RevokeTokens(c)) => tokens::revoke(view, c, cx),
        Some(Kind::CreateCfOrganization(c)) => cf::create_organization(view, c, cx),
        Some(Kind::CreateCfSpace(c)) => cf::create_space(view, c, cx),
        Some(Kind::CreateCfApp(c)) => cf::create_app(view, c, cx),
        Some(Kind::UpdateCfResource(c)) => cf::update_resource(view, c, cx),
        Some(Kind::DeleteCfResource(c)) => cf::delete_resource(view, c, cx),
        Some(Kind::SetCfAppState(c)) if c.restart => cf_rollout::restart_app(view, c, cx),
        Some(Kind::SetCfAppState(c)) => cf::set_app_state(view, c, cx),
        Some(Kind::ApplyCfManifest(c)) => cf_manifest::apply(view, c, cx),
        Some(Kind::UpdateCfProcess(c)) => cf::update_process(view, c, cx),
        Some(Kind::ScaleCfProcess(c)) => cf::scale_process(view, c, cx),
        Some(Kind::TerminateCfInstance(c)) => cf::terminate_instance(view, c, cx),
        Some(Kind::StepCfRollout(c)) => cf_rollout::step(view, c, cx),
    }
}
