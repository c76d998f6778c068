//! GeoIP for the geoip strategy: a MaxMind-format database (opened once,
//! reloaded when the file changes) that maps an address to the values of the
//! configured fields.
//!
//! Like upstream k8gb's CoreDNS geoip, the client address and each target
//! address are looked up, and a target is kept when its value matches the
//! client's. This module only answers "what are the values for this
//! address"; the comparison lives in the strategy engine.
//!
//! Opening checks the file before any lookup can touch it: the metadata must
//! decode, the search tree must fit in the file, every tree record must be
//! an inner node, the empty marker or a pointer into the data section, and
//! the data reachable from the tree must decode (bounded nesting, no pointer
//! loops). The reader relies on all of that without checking, so with it
//! [`GeoDb::locate`] stays in bounds: it needs no I/O and cannot fail.
//! The checks are linear in the file size and run once per load.

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use maxminddb::{LookupResult, PathElement, Reader};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Why a database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("{path}: {reason}")]
    Open { path: String, reason: String },
}

impl GeoIpError {
    fn open(path: &Path, reason: impl Into<String>) -> GeoIpError {
        GeoIpError::Open {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}

/// The location of one address: the value of each configured field, in
/// field order (`None` where the database has no value), and the prefix
/// length of the database network that matched (for the ECS scope).
///
/// `prefix_len` is in the address family of the address looked up: 0..=32
/// for IPv4, 0..=128 for IPv6 (an IPv4-mapped IPv6 address is looked up as
/// its IPv4 address and gets `96 +` the IPv4 prefix length).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub values: Vec<Option<Box<str>>>,
    pub prefix_len: u8,
}

/// Marks the start of the metadata section (MaxMind DB spec).
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The zero bytes between the search tree and the data section.
const DATA_SEPARATOR: usize = 16;
/// Field paths up to this many segments are looked up without allocating.
const INLINE_PATH: usize = 8;
/// How often [`watch`] looks at the file.
pub const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// An open database plus the fields compared.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    fields: Vec<String>,
    /// Each field split at the dots.
    paths: Vec<Box<[Box<str>]>>,
    /// IPv6 databases only: how deep the all-zero path goes before it ends
    /// (96 when IPv4 addresses have their own subtree at `::/96`).
    ipv4_depth: usize,
    /// The file version read, for [`watch`].
    stamp: Stamp,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("database_type", &self.reader.metadata.database_type)
            .field("ip_version", &self.reader.metadata.ip_version)
            .field("node_count", &self.reader.metadata.node_count)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl GeoDb {
    /// Opens and checks a database. A missing or corrupt file is an error.
    pub fn open(path: &Path, fields: &[String]) -> Result<GeoDb, GeoIpError> {
        let paths = split_fields(fields).map_err(|r| GeoIpError::open(path, r))?;
        let (buf, stamp) =
            read(path).map_err(|e| GeoIpError::open(path, format!("cannot read the database: {e}")))?;
        let bad = |r: String| GeoIpError::open(path, format!("not a usable MaxMind database: {r}"));
        let layout = check_layout(&buf).map_err(bad)?;
        // `check_layout` decoded the same metadata and walked the tree, so
        // this cannot go out of bounds.
        let reader = Reader::from_source(buf).map_err(|e| bad(e.to_string()))?;
        Ok(GeoDb {
            reader,
            fields: fields.to_vec(),
            paths,
            ipv4_depth: layout.ipv4_depth,
            stamp,
        })
    }

    /// Looks an address up. Never fails: an unknown address has no values.
    pub fn locate(&self, ip: IpAddr) -> Location {
        // As the Go reader does, an IPv4-mapped address is an IPv4 address.
        let (query, mapped) = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), true),
                None => (ip, false),
            },
            IpAddr::V4(_) => (ip, false),
        };
        // The only lookup error for a checked database: IPv6 in an IPv4 one.
        let Ok(found) = self.reader.lookup(query) else {
            return self.nothing(0);
        };
        let mut prefix_len = self.prefix_len(&found, query);
        if mapped {
            prefix_len += 96;
        }
        if !found.has_data() {
            return self.nothing(prefix_len);
        }
        let values = self.paths.iter().map(|p| field_value(&found, p)).collect();
        Location { values, prefix_len }
    }

    /// The fields compared, as given to [`GeoDb::open`].
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// The `database_type` from the metadata (e.g. `GeoIP2-City`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    fn nothing(&self, prefix_len: u8) -> Location {
        Location {
            values: vec![None; self.paths.len()],
            prefix_len,
        }
    }

    /// The prefix length of the matched network in the family of `query`.
    fn prefix_len(&self, found: &LookupResult<'_, Vec<u8>>, query: IpAddr) -> u8 {
        let prefix = found.network().map(|n| n.prefix()).unwrap_or(0);
        match query {
            // The all-zero path ends above ::/96: one record covers every
            // IPv4 address.
            IpAddr::V4(_) if self.reader.metadata.ip_version == 6 && self.ipv4_depth < 96 => 0,
            IpAddr::V4(_) => prefix.min(32),
            IpAddr::V6(_) => prefix.min(128),
        }
    }
}

/// The file's bytes and the version they are from.
fn read(path: &Path) -> io::Result<(Vec<u8>, Stamp)> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    io::Read::read_to_end(&mut file, &mut buf)?;
    Ok((buf, Stamp::of(&meta)))
}

/// Splits each field at the dots; an empty segment is an error.
fn split_fields(fields: &[String]) -> Result<Vec<Box<[Box<str>]>>, String> {
    fields
        .iter()
        .map(|f| {
            if f.split('.').any(str::is_empty) {
                return Err(format!("{f:?} is not a field path"));
            }
            Ok(f.split('.').map(Box::from).collect())
        })
        .collect()
}

/// The value at `path` as text, if it is a scalar.
fn field_value(found: &LookupResult<'_, Vec<u8>>, path: &[Box<str>]) -> Option<Box<str>> {
    let decoded = if path.len() <= INLINE_PATH {
        let keys: [PathElement<'_>; INLINE_PATH] =
            std::array::from_fn(|i| PathElement::Key(path.get(i).map_or("", |s| &**s)));
        found.decode_path::<Scalar>(&keys[..path.len()])
    } else {
        let keys: Vec<PathElement<'_>> = path.iter().map(|s| PathElement::Key(s)).collect();
        found.decode_path::<Scalar>(&keys)
    };
    // A type mismatch on the way (a key into a string, say) is no value.
    decoded.ok().flatten().and_then(|s| s.0)
}

/// A scalar decoded as text; maps, arrays and bytes are `None`.
struct Scalar(Option<Box<str>>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

fn text(v: impl ToString) -> Option<Box<str>> {
    Some(v.to_string().into_boxed_str())
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Option<Box<str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Box::from(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(text(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(text(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        Ok(text(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(text(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        Ok(text(v))
    }
    fn visit_f32<E: de::Error>(self, v: f32) -> Result<Self::Value, E> {
        Ok(text(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(text(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    // Not walked: nothing is read after the value.
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Ok(None)
    }
}

/// What [`check_layout`] learned about a database.
struct Layout {
    ipv4_depth: usize,
}

/// Checks what the reader relies on without checking: metadata that
/// decodes, a search tree inside the file followed by the separator, and
/// tree records that stay inside the tree or the data section.
fn check_layout(buf: &[u8]) -> Result<Layout, String> {
    let marker = buf
        .windows(METADATA_MARKER.len())
        .rposition(|w| w == METADATA_MARKER)
        .ok_or("no metadata section (not a MaxMind DB file, or truncated)")?;

    // The metadata is a map in the data format: check it like data first
    // (the reader's decoder recurses through pointers to skip what it does
    // not know).
    let meta_start = marker + METADATA_MARKER.len();
    DataCheck::new(&buf[meta_start..])
        .once(0, 0)
        .map_err(|e| format!("metadata: {e}"))?;
    // Decode the metadata alone: behind eight zero bytes (a tree whose
    // records all point at node 0) the reader's set-up stays in bounds.
    // Catching a panic is belt and braces: the check above covers what
    // is known to panic.
    let mut probe = vec![0u8; 8];
    probe.extend_from_slice(&buf[marker..]);
    let meta = match catch_unwind(AssertUnwindSafe(|| Reader::from_source(probe))) {
        Ok(Ok(r)) => r.metadata,
        Ok(Err(e)) => return Err(format!("metadata: {e}")),
        Err(_) => return Err("metadata: corrupt".into()),
    };
    if meta.binary_format_major_version != 2 {
        return Err(format!(
            "binary format version {} (expected 2)",
            meta.binary_format_major_version
        ));
    }
    if !matches!(meta.ip_version, 4 | 6) {
        return Err(format!("ip_version {} (expected 4 or 6)", meta.ip_version));
    }
    let record_size = usize::from(meta.record_size);
    if !matches!(record_size, 24 | 28 | 32) {
        return Err(format!("record_size {record_size} (expected 24, 28 or 32)"));
    }
    let node_count = usize::try_from(meta.node_count).map_err(|e| e.to_string())?;
    if node_count == 0 {
        return Err("empty search tree (node_count 0)".into());
    }
    // Each node holds two records.
    let tree_size = node_count
        .checked_mul(record_size / 4)
        .ok_or("search tree size overflows")?;
    let data_start = tree_size
        .checked_add(DATA_SEPARATOR)
        .filter(|&s| s <= marker)
        .ok_or_else(|| {
            format!("the search tree ({node_count} nodes) does not fit in the file (truncated?)")
        })?;
    if buf[tree_size..data_start].iter().any(|&b| b != 0) {
        return Err("no data section separator after the search tree".into());
    }
    let mut data = DataCheck::new(&buf[data_start..marker]);

    let record = |node: usize, side: usize| read_record(buf, record_size, node, side);
    for node in 0..node_count {
        for side in 0..2 {
            let r = record(node, side).ok_or("search tree out of bounds")?;
            if r <= node_count {
                continue; // an inner node or "no data"
            }
            let offset = (r - node_count)
                .checked_sub(DATA_SEPARATOR)
                .filter(|&o| o < data.len())
                .ok_or_else(|| format!("search tree node {node} points outside the data section"))?;
            data.once(offset, 0)?;
        }
    }

    // Mirrors the reader: IPv4 lookups in an IPv6 tree start where the
    // all-zero path (::/96) ends.
    let mut ipv4_depth = 0;
    if meta.ip_version == 6 {
        let mut node = 0;
        while ipv4_depth < 96 && node < node_count {
            node = record(node, 0).ok_or("search tree out of bounds")?;
            ipv4_depth += 1;
        }
    }
    Ok(Layout { ipv4_depth })
}

/// Nesting (maps, arrays, pointers) allowed in the data section; the
/// reader allows 512, real databases use a handful.
const MAX_DATA_DEPTH: usize = 256;

/// One value's header in the data section.
enum Item {
    Pointer(usize),
    Map(usize),
    Array(usize),
    /// A string's length in bytes.
    Str(usize),
    /// Any other scalar's payload length.
    Scalar(usize),
}

/// Checks the data reachable from the search tree the way the reader
/// decodes it: every header and payload inside the data section, known
/// types with sizes that fit them, string map keys, pointers to values
/// (not to pointers) and bounded nesting. The reader assumes some of this
/// (an unchecked extended type overflows, a pointer loop recurses without
/// end when a lookup skips over it), so lookups only ever meet checked data.
struct DataCheck<'a> {
    data: &'a [u8],
    /// One bit per offset: a record or pointer target already checked.
    checked: Vec<u64>,
}

impl DataCheck<'_> {
    fn new(data: &[u8]) -> DataCheck<'_> {
        DataCheck {
            data,
            checked: vec![0; data.len().div_ceil(64)],
        }
    }

    fn len(&self) -> usize {
        self.data.len()
    }

    /// Checks a value reached from the tree or through a pointer, once.
    fn once(&mut self, at: usize, depth: usize) -> Result<(), String> {
        let (word, bit) = (at / 64, 1u64 << (at % 64));
        if self.checked.get(word).is_some_and(|w| w & bit != 0) {
            return Ok(());
        }
        self.value(at, depth)?;
        if let Some(w) = self.checked.get_mut(word) {
            *w |= bit;
        }
        Ok(())
    }

    /// Checks the value at `at`; returns where it ends.
    fn value(&mut self, at: usize, depth: usize) -> Result<usize, String> {
        if depth > MAX_DATA_DEPTH {
            return Err(format!(
                "data at offset {at}: nested too deeply (a pointer loop?)"
            ));
        }
        let (item, mut pos) = self.header(at)?;
        match item {
            Item::Pointer(target) => {
                if matches!(self.header(target)?, (Item::Pointer(_), _)) {
                    return Err(format!("data at offset {at}: a pointer to a pointer"));
                }
                self.once(target, depth + 1)?;
            }
            Item::Map(entries) => {
                for _ in 0..entries {
                    pos = self.key(pos)?;
                    pos = self.value(pos, depth + 1)?;
                }
            }
            Item::Array(items) => {
                for _ in 0..items {
                    pos = self.value(pos, depth + 1)?;
                }
            }
            Item::Str(len) | Item::Scalar(len) => pos = self.end(at, pos, len)?,
        }
        Ok(pos)
    }

    /// Checks a map key (a string, or a pointer to one); returns its end.
    fn key(&self, at: usize) -> Result<usize, String> {
        let not_string = || format!("data at offset {at}: a map key that is not a string");
        match self.header(at)? {
            (Item::Str(len), start) => self.end(at, start, len),
            (Item::Pointer(target), after) => match self.header(target)? {
                (Item::Str(len), start) => self.end(target, start, len).map(|_| after),
                _ => Err(not_string()),
            },
            _ => Err(not_string()),
        }
    }

    fn end(&self, at: usize, pos: usize, len: usize) -> Result<usize, String> {
        pos.checked_add(len)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("data at offset {at}: runs past the data section"))
    }

    /// Reads the control byte(s) at `at`; returns the item and the offset
    /// after the header.
    fn header(&self, at: usize) -> Result<(Item, usize), String> {
        let past = || format!("data at offset {at}: runs past the data section");
        let byte = |i: usize| self.data.get(i).map(|&b| usize::from(b)).ok_or_else(past);
        let ctrl = byte(at)?;
        let mut pos = at + 1;
        let mut kind = ctrl >> 5;
        let mut size = ctrl & 0x1f;
        if kind == 1 {
            let extra = size >> 3 & 3;
            let mut target = if extra == 3 { 0 } else { size & 7 };
            for _ in 0..=extra {
                target = target << 8 | byte(pos)?;
                pos += 1;
            }
            target += [0, 2048, 526_336, 0][extra];
            if target >= self.data.len() {
                return Err(format!("data at offset {at}: a pointer outside the data section"));
            }
            return Ok((Item::Pointer(target), pos));
        }
        if kind == 0 {
            kind = byte(pos)? + 7;
            pos += 1;
        }
        match size {
            29 => {
                size = 29 + byte(pos)?;
                pos += 1;
            }
            30 => {
                size = 285 + (byte(pos)? << 8 | byte(pos + 1)?);
                pos += 2;
            }
            31 => {
                size = 65_821 + (byte(pos)? << 16 | byte(pos + 1)? << 8 | byte(pos + 2)?);
                pos += 3;
            }
            _ => {}
        }
        let item = match (kind, size) {
            (7, n) => Item::Map(n),
            (11, n) => Item::Array(n),
            (2, n) => Item::Str(n),
            // bytes, double, float
            (4, n) | (3, n @ 8) | (15, n @ 4) => Item::Scalar(n),
            // uint16, uint32, int32, uint64, uint128
            (5, n @ 0..=2) | (6 | 8, n @ 0..=4) | (9, n @ 0..=8) | (10, n @ 0..=16) => Item::Scalar(n),
            // bool: the size is the value
            (14, 0 | 1) => Item::Scalar(0),
            _ => {
                return Err(format!(
                    "data at offset {at}: type {kind} with size {size} is not valid"
                ));
            }
        };
        Ok((item, pos))
    }
}

/// One record of a search tree node (`side` 0 = left, 1 = right).
fn read_record(buf: &[u8], record_size: usize, node: usize, side: usize) -> Option<usize> {
    let base = node.checked_mul(record_size / 4)?;
    let bytes = |at: usize, len: usize| buf.get(base + at..base + at + len);
    let be = |b: &[u8]| b.iter().fold(0usize, |acc, &x| acc << 8 | usize::from(x));
    match record_size {
        24 => bytes(side * 3, 3).map(be),
        28 => {
            let middle = *bytes(3, 1)?.first()?;
            let high = if side == 0 { middle >> 4 } else { middle & 0x0f };
            Some(usize::from(high) << 24 | be(bytes(side * 4, 3)?))
        }
        32 => bytes(side * 4, 4).map(be),
        _ => None,
    }
}

/// The database shared by the engine and the query path.
pub type SharedGeoDb = Arc<ArcSwapOption<GeoDb>>;

/// Opens the database and makes it the shared one. On error the database
/// already shared (if any) stays.
pub fn load_into(shared: &SharedGeoDb, path: &Path, fields: &[String]) -> Result<(), GeoIpError> {
    let db = GeoDb::open(path, fields)?;
    shared.store(Some(Arc::new(db)));
    Ok(())
}

/// Reloads the database when the file changes (modified time, length or
/// inode, looked at every second), then sends `()` on `changed` (skipped
/// when the channel is full: a notification is already waiting). A file
/// that is missing or does not open is logged once (one `error` line with
/// the path and the problem) and the previous database stays in use.
/// Returns when `cancel` fires.
///
/// The shared database (if any) counts as the file's current version, so
/// call [`load_into`] first; with none shared, the first look loads it.
pub async fn watch(
    path: PathBuf,
    fields: Vec<String>,
    shared: SharedGeoDb,
    changed: mpsc::Sender<()>,
    cancel: CancellationToken,
) {
    watch_every(WATCH_PERIOD, path, fields, shared, changed, cancel).await;
}

/// Identifies a version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
    dev: u64,
}

/// The file as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    File(Stamp),
    Unreadable(io::ErrorKind),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            ino: m.ino(),
            dev: m.dev(),
        }
    }
}

async fn look(path: &Path) -> Result<Stamp, io::Error> {
    tokio::fs::metadata(path).await.map(|m| Stamp::of(&m))
}

/// [`watch`] with the polling period as a parameter.
async fn watch_every(
    period: Duration,
    path: PathBuf,
    fields: Vec<String>,
    shared: SharedGeoDb,
    changed: mpsc::Sender<()>,
    cancel: CancellationToken,
) {
    let fields: Arc<[String]> = fields.into();
    let mut last = shared.load().as_ref().map(|db| Seen::File(db.stamp));
    let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = look(&path).await;
        let stamp = match now {
            Ok(s) if last == Some(Seen::File(s)) => continue,
            Ok(s) => s,
            Err(e) => {
                if last != Some(Seen::Unreadable(e.kind())) {
                    tracing::error!(
                        "geoip database {}: {e}; keeping the previous database",
                        path.display()
                    );
                    last = Some(Seen::Unreadable(e.kind()));
                }
                continue;
            }
        };
        match reload(&path, &fields).await {
            Ok(db) => {
                tracing::info!(
                    path = %path.display(),
                    database_type = db.database_type(),
                    "geoip database reloaded"
                );
                // The version read; if the file changed since, the next
                // tick reloads again.
                last = Some(Seen::File(db.stamp));
                shared.store(Some(Arc::new(db)));
                // Full: a notification is already waiting. Closed: nobody
                // listens, the new database is in place all the same.
                let _ = changed.try_send(());
            }
            Err(e) => {
                // Still being written: try again next tick, without noise.
                if look(&path).await.ok() != Some(stamp) {
                    continue;
                }
                tracing::error!("geoip database not reloaded, keeping the previous one: {e}");
                last = Some(Seen::File(stamp));
            }
        }
    }
}

/// Opens the database off the async threads (it reads the whole file).
async fn reload(path: &Path, fields: &Arc<[String]>) -> Result<GeoDb, GeoIpError> {
    let (p, f) = (path.to_path_buf(), Arc::clone(fields));
    tokio::task::spawn_blocking(move || GeoDb::open(&p, &f))
        .await
        .unwrap_or_else(|e| Err(GeoIpError::open(path, format!("loading failed: {e}"))))
}

#[cfg(test)]
mod tests {
    //! Hand-made databases (a tiny encoder below), so these tests need no
    //! tools; `tests/geoip.rs` covers databases written by mmdb-writer.

    use super::*;
    use std::sync::Mutex;

    // ---- a tiny MaxMind DB encoder ----

    fn header(kind: u8, size: usize) -> Vec<u8> {
        let size = u8::try_from(size).expect("small test values");
        assert!(size < 29, "test values stay small");
        if kind <= 7 {
            vec![kind << 5 | size]
        } else {
            vec![size, kind - 7]
        }
    }
    fn string(v: &str) -> Vec<u8> {
        [header(2, v.len()), v.as_bytes().to_vec()].concat()
    }
    fn uint(kind: u8, v: u128) -> Vec<u8> {
        let bytes: Vec<u8> = v.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        [header(kind, bytes.len()), bytes].concat()
    }
    fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = header(7, entries.len());
        for (k, v) in entries {
            out.extend(string(k));
            out.extend(v);
        }
        out
    }
    fn array(items: &[Vec<u8>]) -> Vec<u8> {
        [header(11, items.len()), items.concat()].concat()
    }

    fn metadata(ip_version: u16, record_size: u16, node_count: u32) -> Vec<u8> {
        map(&[
            ("binary_format_major_version", uint(5, 2)),
            ("binary_format_minor_version", uint(5, 0)),
            ("build_epoch", uint(9, 1_700_000_000)),
            ("database_type", string("k8gb-test")),
            ("description", map(&[])),
            ("ip_version", uint(5, ip_version.into())),
            ("languages", array(&[])),
            ("node_count", uint(6, node_count.into())),
            ("record_size", uint(5, record_size.into())),
        ])
    }

    /// A database: tree nodes as (left, right) record values, then data.
    struct Raw {
        ip_version: u16,
        record_size: u16,
        nodes: Vec<[usize; 2]>,
        data: Vec<u8>,
    }

    impl Raw {
        fn bytes(&self) -> Vec<u8> {
            self.with_metadata(metadata(
                self.ip_version,
                self.record_size,
                u32::try_from(self.nodes.len()).expect("few nodes"),
            ))
        }
        fn with_metadata(&self, meta: Vec<u8>) -> Vec<u8> {
            let mut out = Vec::new();
            for &[l, r] in &self.nodes {
                match self.record_size {
                    24 => {
                        out.extend(&l.to_be_bytes()[5..]);
                        out.extend(&r.to_be_bytes()[5..]);
                    }
                    28 => {
                        out.extend(&l.to_be_bytes()[5..]);
                        let high = (l >> 24 & 0x0f) << 4 | (r >> 24 & 0x0f);
                        out.push(u8::try_from(high).expect("nibbles"));
                        out.extend(&r.to_be_bytes()[5..]);
                    }
                    _ => {
                        out.extend(&l.to_be_bytes()[4..]);
                        out.extend(&r.to_be_bytes()[4..]);
                    }
                }
            }
            out.extend([0u8; DATA_SEPARATOR]);
            out.extend(&self.data);
            out.extend(METADATA_MARKER);
            out.extend(meta);
            out
        }
    }

    fn all_types() -> Vec<u8> {
        map(&[
            ("datacenter", string("eu")),
            ("u16", uint(5, 7)),
            ("u32", uint(6, 70_000)),
            ("u64", uint(9, 5_000_000_000)),
            ("u128", uint(10, 1 << 100)),
            ("i32", [header(8, 4), (-5i32).to_be_bytes().to_vec()].concat()),
            ("f64", [header(3, 8), 1.5f64.to_be_bytes().to_vec()].concat()),
            ("f32", [header(15, 4), 0.25f32.to_be_bytes().to_vec()].concat()),
            ("yes", header(14, 1)),
            ("no", header(14, 0)),
            ("blob", [header(4, 2), vec![1, 2]].concat()),
            ("list", array(&[string("a")])),
            (
                "geo",
                map(&[("cc", string("DE")), ("deep", map(&[("x", string("y"))]))]),
            ),
        ])
    }

    /// IPv4: 0.0.0.0/2 → all types, 64.0.0.0/2 → datacenter us,
    /// 128.0.0.0/1 → nothing.
    fn v4_db(record_size: u16) -> Raw {
        let a = all_types();
        let b = map(&[("datacenter", string("us"))]);
        let n = 2;
        Raw {
            ip_version: 4,
            record_size,
            nodes: vec![[1, n], [n + 16, n + 16 + a.len()]],
            data: [a, b].concat(),
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write test database");
        path
    }

    fn fields(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    fn open_raw(bytes: &[u8], f: &[&str]) -> Result<GeoDb, GeoIpError> {
        let dir = tempfile::tempdir().expect("tempdir");
        GeoDb::open(&write(dir.path(), "t.mmdb", bytes), &fields(f))
    }

    fn values(loc: &Location) -> Vec<Option<&str>> {
        loc.values.iter().map(|v| v.as_deref()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn open_err(bytes: &[u8]) -> String {
        match open_raw(bytes, &["datacenter"]) {
            Ok(db) => panic!("opened a bad database: {db:?}"),
            Err(e) => e.to_string(),
        }
    }

    // ---- fields and values ----

    #[test]
    fn fields_split_at_dots_and_empty_segments_are_rejected() {
        let paths = split_fields(&fields(&["datacenter", "country.iso_code"])).expect("ok");
        assert_eq!(&*paths[1], &[Box::from("country"), Box::from("iso_code")]);
        for bad in ["", "a..b", ".a", "a."] {
            let e = split_fields(&fields(&[bad])).expect_err(bad);
            assert!(e.contains("not a field path"), "{e}");
        }
        let bytes = v4_db(24).bytes();
        let e = open_raw(&bytes, &["a..b"]).expect_err("bad field");
        assert!(e.to_string().contains("\"a..b\" is not a field path"), "{e}");
    }

    #[test]
    fn scalars_are_text_and_maps_arrays_bytes_are_none() {
        let bytes = v4_db(24).bytes();
        let f = [
            "datacenter",
            "u16",
            "u32",
            "u64",
            "u128",
            "i32",
            "f64",
            "f32",
            "yes",
            "no",
            "blob",
            "list",
            "geo",
            "geo.cc",
            "geo.deep.x",
            "geo.cc.x",
            "missing",
            "geo.missing",
        ];
        let db = open_raw(&bytes, &f).expect("open");
        let loc = db.locate(ip("10.0.0.1"));
        let big = (1u128 << 100).to_string();
        assert_eq!(
            values(&loc),
            [
                Some("eu"),
                Some("7"),
                Some("70000"),
                Some("5000000000"),
                Some(big.as_str()),
                Some("-5"),
                Some("1.5"),
                Some("0.25"),
                Some("true"),
                Some("false"),
                None,
                None,
                None,
                Some("DE"),
                Some("y"),
                None,
                None,
                None,
            ]
        );
    }

    #[test]
    fn long_field_paths_are_looked_up_too() {
        let mut value = string("deep");
        let keys: Vec<String> = (0..INLINE_PATH + 2).map(|i| format!("k{i}")).collect();
        for k in keys.iter().rev() {
            value = map(&[(k.as_str(), value)]);
        }
        let raw = Raw {
            ip_version: 4,
            record_size: 24,
            nodes: vec![[1 + 16, 1 + 16]],
            data: value,
        };
        let field = keys.join(".");
        let db = open_raw(&raw.bytes(), &[field.as_str()]).expect("open");
        assert_eq!(values(&db.locate(ip("1.2.3.4"))), [Some("deep")]);
    }

    // ---- lookups ----

    #[test]
    fn ipv4_database_values_and_prefix_for_every_record_size() {
        for record_size in [24, 28, 32] {
            let bytes = v4_db(record_size).bytes();
            let db = open_raw(&bytes, &["missing", "datacenter"]).expect("open");
            let at = |a: &str| db.locate(ip(a));
            assert_eq!(values(&at("10.0.0.1")), [None, Some("eu")], "{record_size}");
            assert_eq!(at("10.0.0.1").prefix_len, 2);
            assert_eq!(values(&at("100.0.0.1")), [None, Some("us")]);
            assert_eq!(at("100.0.0.1").prefix_len, 2);
            // Unknown: no values, the prefix of the empty network.
            assert_eq!(
                at("200.0.0.1"),
                Location {
                    values: vec![None, None],
                    prefix_len: 1
                }
            );
            // An IPv4-mapped address is its IPv4 address, prefix in IPv6 terms.
            assert_eq!(values(&at("::ffff:100.0.0.1")), [None, Some("us")]);
            assert_eq!(at("::ffff:100.0.0.1").prefix_len, 98);
            // Other IPv6 addresses are unknown to an IPv4 database.
            assert_eq!(
                at("2001:db8::1"),
                Location {
                    values: vec![None, None],
                    prefix_len: 0
                }
            );
            assert_eq!(db.database_type(), "k8gb-test");
            assert_eq!(db.fields(), ["missing", "datacenter"]);
        }
    }

    #[test]
    fn ipv6_database_without_an_ipv4_subtree_gives_ipv4_prefix_0() {
        // ::/1 → nothing, 8000::/1 → us: every IPv4 address is in ::/1.
        let b = map(&[("datacenter", string("us"))]);
        let raw = Raw {
            ip_version: 6,
            record_size: 24,
            nodes: vec![[1, 1 + 16]],
            data: b,
        };
        let db = open_raw(&raw.bytes(), &["datacenter"]).expect("open");
        assert_eq!(
            db.locate(ip("10.0.0.1")),
            Location {
                values: vec![None],
                prefix_len: 0
            }
        );
        let v6 = db.locate(ip("8000::1"));
        assert_eq!((values(&v6), v6.prefix_len), (vec![Some("us")], 1));
        assert_eq!(
            db.locate(ip("::1")),
            Location {
                values: vec![None],
                prefix_len: 1
            }
        );
    }

    #[test]
    fn no_fields_means_no_values() {
        let db = open_raw(&v4_db(24).bytes(), &[]).expect("open");
        assert_eq!(
            db.locate(ip("10.0.0.1")),
            Location {
                values: vec![],
                prefix_len: 2
            }
        );
    }

    // ---- corrupt databases are errors, not panics ----

    #[test]
    fn missing_file_names_path_and_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nope.mmdb");
        let e = GeoDb::open(&path, &fields(&["datacenter"])).expect_err("missing");
        let text = e.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("cannot read the database"), "{text}");
    }

    #[test]
    fn structural_damage_is_reported() {
        let good = v4_db(24);
        let n = good.nodes.len();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not a database at all".to_vec(), "no metadata section"),
            (Vec::new(), "no metadata section"),
            (
                good.with_metadata(metadata(4, 24, 1000)),
                "does not fit in the file",
            ),
            (good.with_metadata(metadata(5, 24, 2)), "ip_version 5"),
            (good.with_metadata(metadata(4, 20, 2)), "record_size"),
            (good.with_metadata(metadata(4, 24, 0)), "node_count 0"),
            (
                good.with_metadata(map(&[("ip_version", uint(5, 4))])),
                "metadata:",
            ),
            // An extended type past the last one (overflows in the reader).
            (
                good.with_metadata(vec![0x00, 0xff, 0x00]),
                "metadata: data at offset 0: type 262",
            ),
            // {"x": <pointer to this map>} (the reader recurses skipping "x").
            (
                good.with_metadata([header(7, 1), string("x"), vec![0x20, 0]].concat()),
                "metadata: data at offset 3: nested too deeply",
            ),
            (
                Raw {
                    nodes: vec![[1, n + 3], [n, n]],
                    ..v4_db(24)
                }
                .bytes(),
                "node 0 points outside the data section",
            ),
            (
                Raw {
                    nodes: vec![[1, n], [n, n + 16 + 10_000]],
                    ..v4_db(24)
                }
                .bytes(),
                "node 1 points outside the data section",
            ),
        ];
        for (bytes, needle) in cases {
            let e = open_err(&bytes);
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
        // The separator after the tree is all zero.
        let mut bytes = good.bytes();
        bytes[n * 6 + 3] = 1;
        assert!(open_err(&bytes).contains("separator"));
        // Every truncation of a good database fails cleanly.
        let bytes = good.bytes();
        for len in 0..bytes.len() {
            let _ = open_raw(&bytes[..len], &["datacenter"]).map(|db| db.locate(ip("10.0.0.1")));
        }
    }

    #[test]
    fn data_section_damage_is_reported() {
        // One node: 0.0.0.0/1 → the record at data offset 0.
        let one = |data: Vec<u8>| Raw {
            ip_version: 4,
            record_size: 24,
            nodes: vec![[1 + 16, 1]],
            data,
        };
        let pointer = |to: u8| vec![0x20, to];
        let dc = || (string("datacenter"), string("eu"));
        let with = |first: (Vec<u8>, Vec<u8>)| {
            let (k, v) = dc();
            [header(7, 2), first.0, first.1, k, v].concat()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            // {"a": <pointer to this map>, ...}: the reader would recurse
            // without end when a lookup skips "a".
            (with((string("a"), pointer(0))), "nested too deeply"),
            // {"a": <pointer to a pointer>, ...}
            (
                [with((string("a"), pointer(19))), pointer(0)].concat(),
                "a pointer to a pointer",
            ),
            (
                with((string("a"), pointer(200))),
                "a pointer outside the data section",
            ),
            // An extended type past the last one.
            (with((string("a"), vec![0x00, 0xff])), "type 262"),
            (
                with((string("a"), [header(5, 3), vec![1, 2, 3]].concat())),
                "type 5 with size 3",
            ),
            (with((uint(5, 1), string("x"))), "a map key that is not a string"),
            (with((pointer(0), string("x"))), "a map key that is not a string"),
            (
                [header(7, 1), string("a"), vec![0x44, b'x']].concat(),
                "runs past",
            ),
            (vec![header(7, 3)[0]], "runs past"),
        ];
        for (data, needle) in cases {
            let e = open_err(&one(data).bytes());
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
        // Keys and values behind pointers are fine.
        let shared_key = [string("datacenter"), string("eu")].concat();
        let record = [header(7, 1), pointer(0), pointer(11)].concat();
        let raw = Raw {
            ip_version: 4,
            record_size: 24,
            nodes: vec![[1 + 16 + shared_key.len(), 1]],
            data: [shared_key, record].concat(),
        };
        let db = open_raw(&raw.bytes(), &["datacenter"]).expect("open");
        assert_eq!(values(&db.locate(ip("1.2.3.4"))), [Some("eu")]);
    }

    // ---- load_into and watch ----

    #[test]
    fn load_into_keeps_the_old_database_on_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write(dir.path(), "good.mmdb", &v4_db(24).bytes());
        let bad = write(dir.path(), "bad.mmdb", b"garbage");
        let shared = SharedGeoDb::default();
        let f = fields(&["datacenter"]);
        assert!(load_into(&shared, &bad, &f).is_err());
        assert!(shared.load().is_none());
        load_into(&shared, &good, &f).expect("good");
        assert!(load_into(&shared, &bad, &f).is_err());
        let db = shared.load_full().expect("still loaded");
        assert_eq!(values(&db.locate(ip("10.0.0.1"))), [Some("eu")]);
    }

    use crate::test_logs::capture_logs;

    fn error_lines(logs: &Mutex<Vec<u8>>) -> Vec<String> {
        let text = String::from_utf8_lossy(&logs.lock().expect("log buffer")).into_owned();
        text.lines()
            .filter(|l| l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// Replaces `path` the way deployments do: write aside, then rename.
    fn replace(path: &Path, bytes: &[u8]) {
        let aside = path.with_extension("new");
        std::fs::write(&aside, bytes).expect("write");
        std::fs::rename(&aside, path).expect("rename");
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn watch_reloads_logs_failures_once_and_stops_on_cancel() {
        let (logs, _guard) = capture_logs();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "geo.mmdb", &v4_db(24).bytes());
        let f = fields(&["datacenter"]);
        let shared = SharedGeoDb::default();
        load_into(&shared, &path, &f).expect("initial load");
        let dc = |shared: &SharedGeoDb| {
            let db = shared.load_full().expect("loaded");
            db.locate(ip("10.0.0.1")).values[0].clone()
        };

        let (tx, mut rx) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(watch_every(
            Duration::from_millis(10),
            path.clone(),
            f.clone(),
            Arc::clone(&shared),
            tx,
            cancel.clone(),
        ));

        // A corrupt file: one error line naming the file, old database kept.
        replace(&path, b"definitely not a MaxMind database");
        eventually("the reload error", || !error_lines(&logs).is_empty()).await;
        assert_eq!(dc(&shared).as_deref(), Some("eu"));

        // A good one: reloaded and announced.
        let us = Raw {
            ip_version: 4,
            record_size: 24,
            nodes: vec![[1 + 16, 1 + 16]],
            data: map(&[("datacenter", string("us"))]),
        };
        replace(&path, &us.bytes());
        let note = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        let errors = error_lines(&logs);
        assert_eq!(note.expect("reload announced"), Some(()), "{errors:?}");
        assert_eq!(dc(&shared).as_deref(), Some("us"));
        let errors = error_lines(&logs);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(&path.display().to_string()), "{errors:?}");
        assert!(errors[0].contains("no metadata section"), "{errors:?}");

        // Gone: one more error line, the database stays.
        std::fs::remove_file(&path).expect("remove");
        eventually("the missing-file error", || error_lines(&logs).len() == 2).await;
        assert!(
            error_lines(&logs)[1].contains("No such file"),
            "{:?}",
            error_lines(&logs)
        );
        assert_eq!(dc(&shared).as_deref(), Some("us"));

        // Back again: reloaded.
        replace(&path, &v4_db(28).bytes());
        let note = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        assert_eq!(note.expect("reload announced"), Some(()));
        assert_eq!(dc(&shared).as_deref(), Some("eu"));
        assert_eq!(error_lines(&logs).len(), 2);

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("watch returns on cancel")
            .expect("no panic");
    }
}
