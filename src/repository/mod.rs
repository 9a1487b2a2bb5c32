//! The model repository: which models exist, which versions of each are in which state, and
//! which servable answers a given request. Transports read it; loading writes it.

mod confine;
mod layout;
mod loader;
mod release;
mod manager;
mod state;
mod tfrecord;
mod warmup;

pub use layout::{LayoutError, discover_models, scan_versions};
pub use confine::EscapeError;
pub use loader::{VersionLoadError, load_servable};
pub use release::{LoadHooks, set_load_hooks};
pub use manager::{ControlError, IndexEntry, IndexState, ManagerHandle, ManagerInbox, ModelManager, channel as manager_channel};
pub use tfrecord::{RecordError, write_records as write_tfrecords};
pub use warmup::{WarmupError, WarmupRequest, read_warmup_requests};
pub use state::{LookupError, ModelHealth, ModelRepository, VersionRequest, VersionState, VersionStatus};
