//! The model repository: which models exist, which versions of each are in which state, and
//! which servable answers a given request. Transports read it; loading writes it.

mod layout;
mod loader;
mod state;

pub use layout::{LayoutError, discover_models, scan_versions};
pub use loader::load_servable;
pub use state::{LookupError, ModelRepository, VersionRequest, VersionState, VersionStatus};
