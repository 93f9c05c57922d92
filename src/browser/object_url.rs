//! Object URLs (`blob:` addresses of bytes in memory) as an owned value: an [`ObjectUrl`] frees
//! its blob when the last clone of it is dropped, so no view has to remember to revoke one.

use std::sync::Arc;

use image::RgbImage;

use crate::browser::js;

/// A `blob:` URL, revoked when its last clone is dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectUrl(Arc<Revoked>);

#[derive(Debug, PartialEq)]
struct Revoked(String);

impl Drop for Revoked {
    fn drop(&mut self) {
        web_sys::Url::revoke_object_url(&self.0).ok();
    }
}

impl ObjectUrl {
    /// A URL for bytes in memory (a download, or an image: the browser sniffs the type).
    pub fn of_bytes(bytes: &[u8]) -> Result<Self, String> {
        Self::of_array(&js_sys::Uint8Array::from(bytes))
    }

    /// A URL for bytes already in JS memory.
    pub fn of_array(array: &js_sys::Uint8Array) -> Result<Self, String> {
        let parts = js_sys::Array::of1(array);
        let blob =
            web_sys::Blob::new_with_u8_array_sequence(&parts).map_err(|e| js::error_text(&e))?;
        Self::of_blob(&blob)
    }

    /// A URL for a blob (a file the user picked).
    pub fn of_blob(blob: &web_sys::Blob) -> Result<Self, String> {
        let url =
            web_sys::Url::create_object_url_with_blob(blob).map_err(|e| js::error_text(&e))?;
        Ok(Self(Arc::new(Revoked(url))))
    }

    /// `img` as a PNG; `None` if encoding fails.
    pub fn png(img: &RgbImage) -> Option<Self> {
        let bytes = crate::engine::data::preprocess::png(img).ok()?;
        Self::of_bytes(&bytes).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0.0
    }
}

impl std::fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
