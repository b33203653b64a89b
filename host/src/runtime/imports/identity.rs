use crate::runtime::bindings::ohos::cloudsync::identity;
use crate::runtime::state::HostState;

impl identity::Host for HostState {
    fn caller_bundle(&mut self) -> String {
        self.b.identity.bundle.clone()
    }

    fn has_permission(&mut self, name: String) -> bool {
        self.b.identity.has_permission(&name)
    }

    fn is_system_app(&mut self) -> bool {
        self.b.identity.system_app
    }

    fn admit_download(&mut self) -> Result<(), String> {
        // The caller's own rate, whichever bundle it downloads for.
        let caller = &self.b.identity.bundle;
        self.b.request_limits.take(caller).map_err(|limit| {
            format!(
                "{caller} may start {} downloads per {:?}; try again later",
                limit.count, limit.window
            )
        })
    }
}
