//! Two-way sync (FileSync / GallerySync). The planner is here; the
//! executor, the scanners and the exported resources come with the rest of
//! the two-way sync work.

pub mod planner;
