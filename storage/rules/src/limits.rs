//! Every limit the LRP rules enforce, named, with its reason.

/// Annotation bytes (Diego: 10 KiB).
pub const ANNOTATION_BYTES_MAX: usize = 10 * 1024;
/// Sum of the byte lengths of the raw JSON route values (Receptor 2015: 4 KiB).
pub const ROUTES_BYTES_MAX: usize = 4 * 1024;
/// Instances of one DesiredLRP. Creating them is one apply (one sled transaction), so the
/// bound keeps an entry's write set under a few MiB; Diego's largest apps run a few thousand.
pub const INSTANCES_MAX: i32 = 10_000;
/// `cpu_weight` upper bound (Diego).
pub const CPU_WEIGHT_MAX: u32 = 100;
/// Bytes of a process_guid or domain: they are parts of sled keys (u16 length prefix) and of URLs.
pub const NAME_BYTES_MAX: usize = 1024;
/// Depth of nested actions; a deeper tree is refused rather than recursed into.
pub use capstan_proto::ACTION_DEPTH_MAX;
/// Nesting depth of one raw JSON route value.
pub use capstan_proto::ROUTE_JSON_DEPTH_MAX;
/// Container ports per DesiredLRP.
pub const PORTS_MAX: usize = 64;
/// Bytes of a Receptor task's `result` (Diego: the first 10 KB of the result file).
pub const TASK_RESULT_BYTES_MAX: usize = 10 * 1024;
/// Bytes of a task's `result_file` path and `completion_callback_url`.
pub const TASK_PATH_BYTES_MAX: usize = 4 * 1024;
