//! ImageNet-1k class names, shipped as data (`assets/imagenet_classes.json`, the list in
//! `../shared/golden`), so predictions need nothing from the network.

use std::sync::OnceLock;

const IMAGENET_JSON: &str = include_str!("../../../assets/imagenet_classes.json");

/// The 1000 ImageNet-1k class names by index.
pub fn imagenet() -> &'static [String] {
    static LABELS: OnceLock<Vec<String>> = OnceLock::new();
    LABELS.get_or_init(|| {
        // The file is part of the build, so a parse failure is a build defect, caught by tests.
        serde_json::from_str(IMAGENET_JSON).expect("assets/imagenet_classes.json is a JSON list")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousand_labels_with_known_entries() {
        let labels = super::imagenet();
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[282], "tiger cat");
        assert_eq!(labels[967], "espresso");
        assert_eq!(labels[309], "bee");
    }
}
