use crate::runtime::bindings::ohos::cloudsync::identity;
use crate::runtime::state::HostState;

impl identity::Host for HostState {
    fn caller_bundle(&mut self) -> String {
        self.b.hooks.caller().bundle.clone()
    }

    fn has_permission(&mut self, name: String) -> bool {
        self.b.hooks.caller().has_permission(&name)
    }

    fn is_system_app(&mut self) -> bool {
        self.b.hooks.caller().system_app
    }

    fn admit_download(&mut self) -> Result<(), String> {
        self.b.hooks.admit_download()
    }
}
