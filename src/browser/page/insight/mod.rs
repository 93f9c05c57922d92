//! What the network sees and says: predictions, "where did it look?" (Grad-CAM), the feature
//! space, each layer's view, and the mistakes of a run.

pub(crate) mod explain;
pub(crate) mod feature_map;
pub(crate) mod layer_views;
pub(crate) mod mistakes;
pub(crate) mod predict;
