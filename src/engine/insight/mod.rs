//! What a model sees and says: predictions, Grad-CAM, the feature space (PCA) and pictures of
//! its layers.

pub mod gradcam;
pub mod inference;
pub mod layer_views;
pub mod pca;
