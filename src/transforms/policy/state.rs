//! The policy transform's small persistent memory:
//! `data_dir/<transform name>/fingerprints.json`.
//!
//! Which repositories, pipelines and environments each fingerprint was seen
//! in (fingerprint spread), and which (identity, context) pairs were seen
//! (baseline drift). One versioned JSON document, written atomically
//! (temporary file, fsync, rename, fsync of the directory), bounded in size.
//! A corrupt or unknown-version file is moved aside and the store starts
//! fresh: it never stops the agent.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;
/// At most this many fingerprints and pairs are remembered; the least
/// recently seen are forgotten first.
pub const MAX_ENTRIES: usize = 10_000;
/// At most this many distinct values per dimension of one fingerprint.
const MAX_VALUES: usize = 32;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Seen {
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub pipelines: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    pub last_seen: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct State {
    pub version: u32,
    /// When this store was first created (seconds since the epoch): the
    /// learning period runs from here.
    pub created: u64,
    #[serde(default)]
    pub fingerprints: BTreeMap<String, Seen>,
    /// (identity, context) key -> last seen.
    #[serde(default)]
    pub pairs: BTreeMap<String, u64>,
    /// identity -> job runs per hour, for the usage-rate baseline.
    #[serde(default)]
    pub usage: BTreeMap<String, Usage>,
}

/// How often an identity is used: job runs in the current hour and a moving
/// mean of runs per hour before it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Usage {
    /// The current hour (hours since the epoch) and its runs so far.
    pub hour: u64,
    pub runs: u32,
    /// Exponentially weighted mean of runs per hour over past hours (about
    /// the last day: each hour weighs 1/24).
    pub mean: f64,
    /// The hour a spike was last reported (one alert per hour at most).
    pub alerted_hour: u64,
}

/// Weight of one hour in [`Usage::mean`].
const HOUR_WEIGHT: f64 = 1.0 / 24.0;

impl Usage {
    /// Counts one run at `now` (seconds); returns the runs of this hour when
    /// they exceed `factor` times the mean and `min_runs`, once per hour.
    pub fn count_run(&mut self, now: u64, factor: f64, min_runs: u32, report: bool) -> Option<u32> {
        let hour = now / 3600;
        if hour != self.hour {
            if self.hour != 0 && hour > self.hour {
                // Fold the finished hour, then the idle hours after it.
                self.mean += HOUR_WEIGHT * (f64::from(self.runs) - self.mean);
                let idle = (hour - self.hour - 1).min(24 * 30) as i32;
                self.mean *= (1.0 - HOUR_WEIGHT).powi(idle);
            }
            self.hour = hour;
            self.runs = 0;
        }
        self.runs = self.runs.saturating_add(1);
        let threshold = (factor * self.mean).max(f64::from(min_runs));
        if report && f64::from(self.runs) > threshold && self.alerted_hour != hour {
            self.alerted_hour = hour;
            return Some(self.runs);
        }
        None
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: VERSION,
            created: now(),
            fingerprints: BTreeMap::new(),
            pairs: BTreeMap::new(),
            usage: BTreeMap::new(),
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// What changed when a fingerprint was seen in a context.
#[derive(Debug, Default, PartialEq)]
pub struct Spread {
    /// (dimension, the values now known) for each dimension that gained a
    /// second or later distinct value.
    pub new_values: Vec<(&'static str, Vec<String>)>,
}

pub struct Store {
    path: PathBuf,
    pub state: State,
    dirty: bool,
}

impl Store {
    /// Opens (or starts) the store in `dir`.
    pub fn open(dir: &Path) -> Self {
        let path = dir.join("fingerprints.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(state) if state.version == VERSION => state,
                Ok(_) | Err(_) => {
                    let aside = path.with_extension(format!("json.corrupt-{}", now()));
                    tracing::warn!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        "policy state is corrupt or of an unknown version; starting fresh"
                    );
                    let _ = std::fs::rename(&path, &aside);
                    State::default()
                }
            },
            Err(_) => State::default(),
        };
        Self {
            path,
            state,
            dirty: true,
        }
    }

    /// Records `fingerprint` in the given context; reports dimensions where
    /// it is now seen in more than one distinct value.
    pub fn see_fingerprint(
        &mut self,
        fingerprint: &str,
        repository: Option<&str>,
        pipeline: Option<&str>,
        environment: Option<&str>,
    ) -> Spread {
        let mut spread = Spread::default();
        if !self.state.fingerprints.contains_key(fingerprint) {
            self.evict_fingerprints();
        }
        let seen = self
            .state
            .fingerprints
            .entry(fingerprint.to_string())
            .or_default();
        seen.last_seen = now();
        for (dimension, list, value) in [
            ("repository", &mut seen.repositories, repository),
            ("pipeline", &mut seen.pipelines, pipeline),
            ("environment", &mut seen.environments, environment),
        ] {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            if list.iter().any(|v| v == value) || list.len() >= MAX_VALUES {
                continue;
            }
            list.push(value.to_string());
            if list.len() > 1 {
                spread.new_values.push((dimension, list.clone()));
            }
        }
        self.dirty = true;
        spread
    }

    /// Records an (identity, context) pair; true when it was never seen.
    /// The learning period, counted from the store's creation, is over.
    pub fn learned(&self, period: std::time::Duration) -> bool {
        now() >= self.state.created.saturating_add(period.as_secs())
    }

    /// Counts a job run using `identity` (see [`Usage::count_run`]).
    pub fn count_run(
        &mut self,
        identity: &str,
        now: u64,
        factor: f64,
        min_runs: u32,
        report: bool,
    ) -> Option<(u32, f64)> {
        if !self.state.usage.contains_key(identity) && self.state.usage.len() >= MAX_ENTRIES {
            return None;
        }
        let usage = self.state.usage.entry(identity.to_string()).or_default();
        let mean = usage.mean;
        let spike = usage.count_run(now, factor, min_runs, report);
        self.dirty = true;
        spike.map(|runs| (runs, mean))
    }

    pub fn see_pair(&mut self, key: &str) -> bool {
        let new = !self.state.pairs.contains_key(key);
        if new
            && self.state.pairs.len() >= MAX_ENTRIES
            && let Some(oldest) = self
                .state
                .pairs
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            self.state.pairs.remove(&oldest);
        }
        self.state.pairs.insert(key.to_string(), now());
        self.dirty = true;
        new
    }

    fn evict_fingerprints(&mut self) {
        while self.state.fingerprints.len() >= MAX_ENTRIES {
            let Some(oldest) = self
                .state
                .fingerprints
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            self.state.fingerprints.remove(&oldest);
        }
    }

    /// Writes the store if it changed. Errors are logged, never fatal.
    pub fn save(&mut self) {
        if !self.dirty {
            return;
        }
        match write_atomically(&self.path, &self.state) {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::warn!(path = %self.path.display(), "cannot save policy state: {e}"),
        }
    }
}

/// Writes `value` as JSON to `path` atomically: temporary file, fsync,
/// rename, fsync of the directory.
pub fn write_atomically<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(value)?)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_spike_is_reported_once_per_hour_against_the_learned_mean() {
        let mut usage = Usage::default();
        let hour = 3600;
        let start = 20_000 * hour;
        // Two days of two runs an hour: the mean settles near 2.
        for h in 0..48 {
            for _ in 0..2 {
                assert_eq!(usage.count_run(start + h * hour, 3.0, 5, true), None);
            }
        }
        assert!((usage.mean - 2.0).abs() < 0.3, "{}", usage.mean);
        // The next hour: up to 3 x mean (5 to 6 runs) is normal ...
        let next = start + 48 * hour;
        let reported: Vec<Option<u32>> = (0..9)
            .map(|_| usage.count_run(next, 3.0, 5, true))
            .collect();
        let first = reported.iter().position(Option::is_some).expect("a spike");
        assert!((5..=6).contains(&first), "{reported:?}");
        // ... and the spike is reported once in that hour.
        assert_eq!(reported.iter().flatten().count(), 1, "{reported:?}");
        // While learning (report = false) nothing is reported, but runs count.
        let mut learning = Usage::default();
        for _ in 0..20 {
            assert_eq!(learning.count_run(start, 3.0, 5, false), None);
        }
        assert_eq!(learning.runs, 20);
        // A quiet week decays the mean towards zero.
        usage.count_run(next + 7 * 24 * hour, 3.0, 5, true);
        assert!(usage.mean < 0.1, "{}", usage.mean);
    }

    #[test]
    fn a_second_repository_is_a_spread_and_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path());
        assert_eq!(
            store.see_fingerprint("abc", Some("acme/a"), Some("CI"), None),
            Spread::default()
        );
        store.save();
        let mut store = Store::open(dir.path());
        let spread = store.see_fingerprint("abc", Some("acme/b"), Some("CI"), None);
        assert_eq!(spread.new_values.len(), 1);
        assert_eq!(spread.new_values[0].0, "repository");
        assert!(store.see_pair("x"));
        assert!(!store.see_pair("x"));
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fingerprints.json"), b"{not json").unwrap();
        let mut store = Store::open(dir.path());
        assert!(store.state.fingerprints.is_empty());
        store.save();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.contains("corrupt")), "{names:?}");
        assert!(names.iter().any(|n| n == "fingerprints.json"));
    }
}
