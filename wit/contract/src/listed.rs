//! Which error codes each method of the seed lists, and the code a failure
//! gets where its own is not among them: the nearest listed one in meaning.
//! Every export of the component passes its errors through
//! [`Method::code_for`], so a caller only ever sees a code its method's
//! table names (docs/architecture.md has the table and the reasons).
//!
//! 201, 202 and 401 are OpenHarmony's universal codes: any system API may
//! refuse with 201/202 (api.md: "201: caller lacks CLOUDFILE_SYNC (system
//! APIs)"), and any method given a bad argument says 401, where a table
//! leaves them out (`getFileSyncState(uri)` lists no 201; the tables of
//! the seed's text, `001_….txt`, are the ones read: its reflowed copy lost
//! `Download.on`'s 401 and 13600001).

use crate::codes::*;

/// A method of the seed (public, system, or named by them: FileSync's are
/// upstream's own tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    CacheOn,
    CacheOff,
    CacheStart,
    CacheStop,
    CleanCache,
    GalleryNew,
    GalleryOn,
    GalleryOff,
    GalleryStart,
    GalleryStop,
    DownloadNew,
    DownloadOn,
    DownloadOff,
    DownloadStart,
    DownloadStop,
    FileSyncNew,
    FileSyncOn,
    FileSyncOff,
    FileSyncStart,
    FileSyncStop,
    GetLastSyncTime,
    /// `getFileSyncState(uris: string[])` (11+).
    FileSyncStates,
    /// `getFileSyncState(uri: string)` (12+, synchronous).
    FileSyncState,
    OptimizeStorage,
    StartOptimizeSpace,
    StopOptimizeSpace,
}

/// The universal codes: allowed from every method (see the module doc).
pub const UNIVERSAL: [u32; 3] = [PERMISSION_DENIED, NOT_SYSTEM_APP, INVALID_PARAMETER];

impl Method {
    pub const ALL: &'static [Method] = &[
        Method::CacheOn,
        Method::CacheOff,
        Method::CacheStart,
        Method::CacheStop,
        Method::CleanCache,
        Method::GalleryNew,
        Method::GalleryOn,
        Method::GalleryOff,
        Method::GalleryStart,
        Method::GalleryStop,
        Method::DownloadNew,
        Method::DownloadOn,
        Method::DownloadOff,
        Method::DownloadStart,
        Method::DownloadStop,
        Method::FileSyncNew,
        Method::FileSyncOn,
        Method::FileSyncOff,
        Method::FileSyncStart,
        Method::FileSyncStop,
        Method::GetLastSyncTime,
        Method::FileSyncStates,
        Method::FileSyncState,
        Method::OptimizeStorage,
        Method::StartOptimizeSpace,
        Method::StopOptimizeSpace,
    ];

    /// The seed's name of the method.
    pub fn name(self) -> &'static str {
        match self {
            Method::CacheOn => "CloudFileCache.on",
            Method::CacheOff => "CloudFileCache.off",
            Method::CacheStart => "CloudFileCache.start",
            Method::CacheStop => "CloudFileCache.stop",
            Method::CleanCache => "CloudFileCache.cleanCache",
            Method::GalleryNew => "new GallerySync",
            Method::GalleryOn => "GallerySync.on",
            Method::GalleryOff => "GallerySync.off",
            Method::GalleryStart => "GallerySync.start",
            Method::GalleryStop => "GallerySync.stop",
            Method::DownloadNew => "new Download",
            Method::DownloadOn => "Download.on",
            Method::DownloadOff => "Download.off",
            Method::DownloadStart => "Download.start",
            Method::DownloadStop => "Download.stop",
            Method::FileSyncNew => "new FileSync",
            Method::FileSyncOn => "FileSync.on",
            Method::FileSyncOff => "FileSync.off",
            Method::FileSyncStart => "FileSync.start",
            Method::FileSyncStop => "FileSync.stop",
            Method::GetLastSyncTime => "FileSync.getLastSyncTime",
            Method::FileSyncStates => "getFileSyncState(uris)",
            Method::FileSyncState => "getFileSyncState(uri)",
            Method::OptimizeStorage => "optimizeStorage",
            Method::StartOptimizeSpace => "startOptimizeSpace",
            Method::StopOptimizeSpace => "stopOptimizeSpace",
        }
    }

    /// The codes the method's table lists, the universal ones left out.
    pub fn listed(self) -> &'static [u32] {
        match self {
            Method::CacheOn | Method::CacheOff => &[SERVICE_FAILED],
            Method::CacheStart => &[SERVICE_FAILED, NO_SUCH_FILE, NO_SPACE, INVALID_URI],
            Method::CacheStop => &[SERVICE_FAILED, NO_SUCH_FILE, INVALID_URI],
            Method::CleanCache => &[SERVICE_FAILED, NO_SUCH_FILE, INVALID_URI],
            Method::GalleryOn | Method::GalleryOff => &[SERVICE_FAILED],
            Method::GalleryStart => &[CLOUD_NOT_READY, NETWORK_UNAVAILABLE, LOW_BATTERY],
            Method::GalleryNew | Method::GalleryStop => &[],
            Method::DownloadNew | Method::DownloadStop => &[],
            Method::DownloadOn | Method::DownloadOff => &[SERVICE_FAILED],
            Method::DownloadStart => &[NO_SUCH_FILE, NO_SPACE],
            Method::FileSyncNew => &[],
            Method::FileSyncOn | Method::FileSyncOff | Method::FileSyncStop | Method::GetLastSyncTime => {
                &[SERVICE_FAILED]
            }
            Method::FileSyncStart => &[SERVICE_FAILED, CLOUD_NOT_READY, NETWORK_UNAVAILABLE, LOW_BATTERY],
            Method::FileSyncStates => &[SERVICE_FAILED, NO_SUCH_FILE, INVALID_URI],
            Method::FileSyncState => &[
                NO_SUCH_FILE,
                INTERRUPTED,
                TRY_AGAIN,
                FS_PERMISSION_DENIED,
                NOT_IMPLEMENTED,
                UNKNOWN,
                INVALID_URI,
            ],
            Method::OptimizeStorage => &[SERVICE_FAILED, UNKNOWN],
            Method::StartOptimizeSpace => &[SERVICE_FAILED, INTERNAL, ALREADY_RUNNING],
            Method::StopOptimizeSpace => &[SERVICE_FAILED, INTERNAL],
        }
    }

    /// Whether `code` may come from this method.
    pub fn allows(self, code: u32) -> bool {
        UNIVERSAL.contains(&code) || self.listed().contains(&code)
    }

    /// The code a failure with `code` gets from this method: its own when
    /// listed, else the first listed of those nearest in meaning. Where a
    /// table lists nothing near (GallerySync.start and stop, Download's
    /// methods: their tables name no failure of the service itself), a
    /// failure of the service stays 13600001, the module's code for it,
    /// rather than take a code that would mislead (a broken disk is not
    /// "cloud not ready").
    pub fn code_for(self, code: u32) -> u32 {
        if self.allows(code) {
            return code;
        }
        let nearest: &[u32] = match code {
            // The URI argument names nothing the method can act on.
            INVALID_URI => &[INVALID_PARAMETER],
            NO_SUCH_FILE => &[INVALID_URI, INVALID_PARAMETER],
            // The store or the host failed: the service failed.
            INTERNAL => &[SERVICE_FAILED, UNKNOWN],
            SERVICE_FAILED => &[INTERNAL, UNKNOWN],
            // The file system failed in a way the method has no code for.
            INTERRUPTED | TRY_AGAIN | FS_PERMISSION_DENIED | NOT_IMPLEMENTED | NO_SPACE => {
                &[UNKNOWN, SERVICE_FAILED, INTERNAL]
            }
            UNKNOWN => &[SERVICE_FAILED, INTERNAL],
            // The cloud or the device refused work the method needed.
            CLOUD_NOT_READY | NETWORK_UNAVAILABLE | LOW_BATTERY | ALREADY_RUNNING => {
                &[SERVICE_FAILED, INTERNAL, UNKNOWN]
            }
            _ => &[SERVICE_FAILED, INTERNAL, UNKNOWN],
        };
        nearest
            .iter()
            .copied()
            .find(|c| self.allows(*c))
            .unwrap_or(SERVICE_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only code a method may give outside its table.
    fn exception(m: Method) -> bool {
        matches!(
            m,
            Method::GalleryNew
                | Method::GalleryStart
                | Method::GalleryStop
                | Method::DownloadNew
                | Method::DownloadStart
                | Method::DownloadStop
                | Method::FileSyncNew
        )
    }

    #[test]
    fn every_code_maps_into_the_table_but_the_named_exceptions() {
        for &m in Method::ALL {
            for code in ALL {
                let got = m.code_for(code);
                assert!(
                    m.allows(got) || (exception(m) && got == SERVICE_FAILED),
                    "{} maps {code} to {got}",
                    m.name()
                );
                if m.allows(code) {
                    assert_eq!(got, code, "{} keeps its own listed codes", m.name());
                }
            }
        }
    }

    #[test]
    fn the_issues_cases() {
        // Metadata failures where 13600001 is listed.
        for m in [Method::FileSyncStates, Method::CleanCache, Method::GetLastSyncTime] {
            assert_eq!(m.code_for(INTERNAL), SERVICE_FAILED, "{}", m.name());
        }
        // The synchronous form lists neither 13600001 nor 22400005.
        assert_eq!(Method::FileSyncState.code_for(INTERNAL), UNKNOWN);
        assert_eq!(Method::FileSyncState.code_for(SERVICE_FAILED), UNKNOWN);
        // Download.stop: a URI it cannot stop is a bad argument.
        assert_eq!(Method::DownloadStop.code_for(NO_SUCH_FILE), INVALID_PARAMETER);
        assert_eq!(Method::DownloadStop.code_for(INVALID_URI), INVALID_PARAMETER);
        assert_eq!(Method::OptimizeStorage.code_for(ALREADY_RUNNING), SERVICE_FAILED);
        assert_eq!(Method::OptimizeStorage.code_for(TRY_AGAIN), UNKNOWN);
        assert_eq!(Method::StopOptimizeSpace.code_for(INTERNAL), INTERNAL);
        // The batch form has no errno codes: a file-system failure is the service's.
        assert_eq!(Method::FileSyncStates.code_for(FS_PERMISSION_DENIED), SERVICE_FAILED);
    }

    #[test]
    fn every_listed_code_is_a_seed_code() {
        for &m in Method::ALL {
            for c in m.listed() {
                assert!(ALL.contains(c), "{} lists {c}", m.name());
            }
        }
    }
}
