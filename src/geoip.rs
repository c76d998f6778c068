//! GeoIP for the geoip strategy: a MaxMind-format database (opened once,
//! reloaded when the file changes) that maps an address to the values of the
//! configured fields.
//!
//! STUB: the interface below is fixed; the implementation lands separately.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("{path}: {reason}")]
    Open { path: String, reason: String },
}

/// The location of one address: the value of each configured field, in
/// field order (`None` where the database has no value), and the prefix
/// length of the database network that matched (for the ECS scope).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub values: Vec<Option<Box<str>>>,
    pub prefix_len: u8,
}

/// An open database plus the fields compared.
pub struct GeoDb {
    _fields: Vec<String>,
}

impl GeoDb {
    /// Opens and checks a database. A missing or corrupt file is an error.
    pub fn open(path: &Path, _fields: &[String]) -> Result<GeoDb, GeoIpError> {
        Err(GeoIpError::Open {
            path: path.display().to_string(),
            reason: "geoip is not implemented yet".into(),
        })
    }

    /// Looks an address up. Never fails: an unknown address has no values.
    pub fn locate(&self, _ip: IpAddr) -> Location {
        Location::default()
    }
}

/// The database shared by the engine and the query path.
pub type SharedGeoDb = Arc<ArcSwapOption<GeoDb>>;

/// Opens `path` and stores it in `shared`, keeping the old database on error.
pub fn load_into(shared: &SharedGeoDb, path: &Path, fields: &[String]) -> Result<(), GeoIpError> {
    let db = GeoDb::open(path, fields)?;
    shared.store(Some(Arc::new(db)));
    Ok(())
}

/// Reloads the database when the file changes until `cancel` fires.
pub async fn watch(
    _path: std::path::PathBuf,
    _fields: Vec<String>,
    _shared: SharedGeoDb,
    _changed: tokio::sync::mpsc::Sender<()>,
    cancel: tokio_util::sync::CancellationToken,
) {
    cancel.cancelled().await;
}
