//! What every API object (`CloudFileCache`, `FileSync`, `GallerySync`,
//! `Download`) shares: its guest resource's id, listener registration, and
//! dropping the resource with the object.

use super::{Callback, ObjectId, ObjectKind, Runtime};
use crate::api::{CloudSyncError, ListenerId};

pub(crate) struct ObjectHandle {
    pub(crate) rt: Runtime,
    pub(crate) id: ObjectId,
}

impl ObjectHandle {
    /// A new object; its guest resource is made on first use (queued now,
    /// in order with the calls that follow), so constructing never fails.
    pub(crate) fn create(rt: &Runtime, kind: ObjectKind) -> Self {
        let id = rt.next_object_id();
        // A runtime shut down fails every later call instead.
        let _ = rt.send(move |d| d.create_object(id, kind));
        ObjectHandle { rt: rt.clone(), id }
    }

    /// Registers `callback` for `event` (only `"progress"`; else 401).
    pub(crate) fn on(&self, event: &str, callback: Callback) -> Result<ListenerId, CloudSyncError> {
        let listener = self.rt.listeners().add(callback);
        let (id, event) = (self.id, event.to_string());
        let result = self.rt.call_blocking(move |d| d.object_on(id, &event, listener));
        if result.is_err() {
            self.rt.listeners().remove(&[listener]);
        }
        result.map(|()| listener)
    }

    /// Unregisters `listener`, or every listener of this object when `None`.
    pub(crate) fn off(&self, event: &str, listener: Option<ListenerId>) -> Result<(), CloudSyncError> {
        let (id, event) = (self.id, event.to_string());
        let removed = self.rt.call_blocking(move |d| d.object_off(id, &event, listener))?;
        self.rt.listeners().remove(&removed);
        Ok(())
    }
}

impl Drop for ObjectHandle {
    fn drop(&mut self) {
        let id = self.id;
        let rt = self.rt.clone();
        let _ = self.rt.send(move |d| {
            let listeners = d.drop_object(id);
            rt.listeners().remove(&listeners);
        });
    }
}
