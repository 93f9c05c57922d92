//! Every limit on what comes from outside (a photo, a model file, a project, a folder tree),
//! in one place: the page and the command line refuse the same things for the same reasons.
//! Each is far above what a classroom meets and far below what exhausts a browser tab.

/// Largest photo file read at all (a 50-megapixel JPEG is about 25 MB): the size is checked
/// before a file is copied into memory.
pub const MAX_PHOTO_BYTES: u64 = 100 << 20;
/// Largest image accepted, in pixels: bigger ones are refused rather than exhausting memory.
pub const MAX_PIXELS: u64 = 50_000_000;
/// Largest model file read (an exported Lite2 is 25 MB): checked before reading into memory.
pub const MAX_MODEL_BYTES: u64 = 256 << 20;
/// Largest project file, written or read (a tab cannot hold much more in wasm memory).
pub const MAX_PROJECT_BYTES: u64 = 1 << 30;
/// Most classes of a model file's head: ImageNet's 1000 (the pretrained checkpoint).
pub const MAX_HEAD_CLASSES: usize = 1000;
/// Fewest classes a model can tell apart.
pub const MIN_CLASSES: usize = 2;
/// Most classes a project or a folder tree may have (a classroom uses a handful).
pub const MAX_CLASSES: usize = 200;
/// Deepest folder read below the chosen one.
pub const MAX_TREE_DEPTH: usize = 32;
/// Most files listed in one folder tree.
pub const MAX_TREE_FILES: usize = 100_000;

/// Megabytes, for messages.
pub fn mb(bytes: u64) -> u64 {
    bytes >> 20
}
