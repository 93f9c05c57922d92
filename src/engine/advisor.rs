//! The strategy advisor: the lesson's table from dataset size and domain to a strategy, with a
//! one-line reason a student can read.

use serde::Serialize;

use super::training::Strategy;

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
pub const SMALL: usize = 1000;
/// Above this many images, fine-tune everything.
pub const LARGE: usize = 10_000;

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

#[cfg(test)]
mod tests {
    use super::*;

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
