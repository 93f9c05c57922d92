//! The strategy advisor: the lesson's table from dataset size and domain to a strategy, with a
//! one-line reason a student can read.

use serde::Serialize;

use crate::engine::data::val_per_class;
use crate::engine::train::config::{Strategy, TrainConfig};
use crate::engine::train::plan::{self, RunPlan};

/// How close the user's images are to ImageNet photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Domain {
    /// Everyday photos of objects, animals, scenes.
    SimilarToImageNet,
    /// X-rays, microscopy, satellite images, drawings, spectrograms...
    UnlikeImageNet,
}

/// A recommended strategy and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Advice {
    pub strategy: Strategy,
    pub why: String,
}

/// Below this many images, train the head alone (the lesson's table).
const SMALL: usize = 1000;
/// Above this many images, fine-tune everything.
const LARGE: usize = 10_000;

/// The lesson's recommendation for `images` labelled images in `classes` classes.
pub fn advise(images: usize, classes: usize, domain: Domain) -> Advice {
    let per_class = images / classes.max(1);
    let (strategy, mut why) = if images < SMALL {
        (
            Strategy::Head,
            format!(
                "{images} images is few: train only the new head on the pretrained features, so the network cannot memorise them"
            ),
        )
    } else if images <= LARGE {
        (
            Strategy::Gradual,
            format!(
                "{images} images is enough to adapt the last layers: unfreeze them step by step, head first, so early mistakes do not wreck the pretrained features"
            ),
        )
    } else {
        (
            Strategy::Full,
            format!(
                "{images} images is plenty: fine-tune the whole network at a low learning rate"
            ),
        )
    };
    if domain == Domain::UnlikeImageNet && strategy == Strategy::Head {
        return Advice {
            strategy: Strategy::LastBlock,
            why: format!(
                "{images} images is few, but your pictures are unlike ImageNet photos: also retrain the last block so the features can adapt"
            ),
        };
    }
    if domain == Domain::UnlikeImageNet && strategy == Strategy::Gradual {
        why.push_str("; unlike ImageNet, so unfreeze deeper than usual");
    }
    if per_class < 10 {
        why.push_str(&format!(
            " (only {per_class} per class: add more images if you can)"
        ));
    }
    Advice { strategy, why }
}

/// Fewer images than this in a class is flagged.
const FEW_PER_CLASS: usize = 10;
/// Fine-tuning pretrained layers above this head rate tends to wreck them.
const HIGH_FINETUNE_LR: f64 = 1e-3;

/// One class as the warnings see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassCount {
    pub name: String,
    pub images: usize,
    /// Images from a `val/` folder.
    pub val_images: usize,
}

/// What the page says about the settings and the data before a run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Warning {
    /// Training cannot start (a setting out of range).
    Blocking(String),
    /// A run would be poor or misleading; it can still start.
    Advice(String),
    /// How the run plan adapts to the data (tiny datasets).
    Note(String),
}

impl Warning {
    pub fn text(&self) -> &str {
        match self {
            Warning::Blocking(s) | Warning::Advice(s) | Warning::Note(s) => s,
        }
    }
}

/// Everything worth saying about `cfg` on these classes, blocking problems first.
pub fn warnings(cfg: &TrainConfig, classes: &[ClassCount]) -> Vec<Warning> {
    let mut out = Vec::new();
    if let Err(e) = cfg.validate() {
        out.push(Warning::Blocking(format!("Cannot train: {e}.")));
    }
    if cfg.strategy != Strategy::Head && cfg.lr > HIGH_FINETUNE_LR {
        out.push(Warning::Advice(format!(
            "A learning rate of {} is high for fine-tuning: big steps can wreck what the pretrained layers know within a few batches. Try 0.001 or lower.",
            cfg.lr
        )));
    } else if cfg.lr > 0.1 {
        out.push(Warning::Advice(format!(
            "A learning rate of {} is very high: the loss may jump around or become NaN. Try 0.001 to 0.01.",
            cfg.lr
        )));
    }
    if cfg.strategy == Strategy::Gradual {
        let stages = plan::stages(cfg);
        let empty = stages.iter().filter(|st| st.epochs == 0).count();
        if empty > 0 {
            out.push(Warning::Advice(format!(
                "Gradual unfreezing runs {} stages, one after the other; with {} epochs, {empty} of them get no epoch. Use at least {} epochs.",
                stages.len(),
                cfg.epochs,
                stages.len()
            )));
        }
    }
    if cfg.augment && !cfg.augmentation.any_on() {
        out.push(Warning::Advice(
            "Augmentation is on but every change is off: training is slower and sees the same images. Turn one on, or augmentation off."
                .to_string(),
        ));
    }
    let total: usize = classes.iter().map(|c| c.images).sum();
    if total == 0 {
        return out;
    }
    let few: Vec<String> = classes
        .iter()
        .filter(|c| c.images < FEW_PER_CLASS)
        .map(|c| format!("\"{}\" ({})", c.name, c.images))
        .collect();
    if !few.is_empty() {
        out.push(Warning::Advice(format!(
            "Few images in {}: aim for at least {FEW_PER_CLASS} per class, or the model learns that class from too few examples.",
            few.join(", ")
        )));
    }
    let counts: Vec<(usize, usize)> = classes.iter().map(|c| (c.images, c.val_images)).collect();
    let val = val_per_class(&counts, cfg.val_fraction);
    let val_total: usize = val.iter().sum();
    let thin: Vec<String> = classes
        .iter()
        .zip(&val)
        .filter(|(_, v)| **v < 2)
        .map(|(c, v)| format!("\"{}\" ({v})", c.name))
        .collect();
    if val_total < 5 || !thin.is_empty() {
        let detail = if thin.is_empty() {
            String::new()
        } else {
            format!(", fewer than 2 for {}", thin.join(", "))
        };
        out.push(Warning::Advice(format!(
            "Only {val_total} images are kept aside to check the model{detail}: one photo more or less right moves the accuracy a lot. Add images, or raise the validation share in Advanced settings."
        )));
    }
    if let Some(note) = RunPlan::new(cfg, total - val_total).note(cfg) {
        out.push(Warning::Note(note));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, images: usize) -> ClassCount {
        ClassCount {
            name: name.into(),
            images,
            val_images: 0,
        }
    }

    #[test]
    fn warnings_block_bad_settings_and_explain_tiny_data() {
        let tiny = [class("ants", 6), class("bees", 6)];
        let w = warnings(&TrainConfig::new().with_epochs(2), &tiny);
        assert!(
            !w.iter().any(|w| matches!(w, Warning::Blocking(_))),
            "{w:?}"
        );
        // 12 images, 1 of each class kept aside: 10 to train on, batches of 4, 11 passes.
        assert!(
            w.contains(&Warning::Note(
                "10 training images: batches of 4 instead of 16, each epoch goes over them 11 times, so every epoch has at least 33 learning steps.".into()
            )),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.text().starts_with("Only 2 images are kept aside"))
        );
        let w = warnings(&TrainConfig::new().with_label_smoothing(1.5), &tiny);
        assert!(
            matches!(&w[0], Warning::Blocking(t) if t.contains("label_smoothing")),
            "{w:?}"
        );
        let many = [class("a", 400), class("b", 400)];
        let w = warnings(&TrainConfig::new(), &many);
        assert!(w.is_empty(), "{w:?}");
        let gradual = TrainConfig::new()
            .with_strategy(Strategy::Gradual)
            .with_epochs(2);
        let w = warnings(&gradual, &many);
        assert!(w[0].text().contains("1 of them get no epoch"), "{w:?}");
    }

    #[test]
    fn follows_the_lessons_table() {
        assert_eq!(
            advise(244, 2, Domain::SimilarToImageNet).strategy,
            Strategy::Head
        );
        assert_eq!(
            advise(5000, 10, Domain::SimilarToImageNet).strategy,
            Strategy::Gradual
        );
        assert_eq!(
            advise(20_000, 10, Domain::SimilarToImageNet).strategy,
            Strategy::Full
        );
        assert_eq!(
            advise(244, 2, Domain::UnlikeImageNet).strategy,
            Strategy::LastBlock
        );
        let a = advise(12, 2, Domain::SimilarToImageNet);
        assert!(
            a.why.contains("12 images") && a.why.contains("only 6 per class"),
            "{}",
            a.why
        );
    }
}
