//! Project files with real photos from ../shared: everything comes back byte for byte (so the
//! restored images decode to the same pixels), and a damaged file is refused by name.

mod common;

use finetune::engine::data::load_sample;
use finetune::engine::io::project::{Project, ProjectClass, ProjectImage};
use finetune::engine::model::LITE0;
use finetune::engine::train::config::{PanelSettings, Strategy, TrainConfig};

fn photos(dir: &str, n: usize) -> Vec<ProjectImage> {
    let dir = common::shared().join("datasets/hymenoptera").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    files.sort();
    files
        .into_iter()
        .take(n)
        .map(|p| ProjectImage {
            file: p.file_name().unwrap().to_string_lossy().into_owned(),
            bytes: std::fs::read(&p).unwrap(),
            val: dir.ends_with("val/bees"),
        })
        .collect()
}

fn project() -> Project {
    Project {
        classes: vec![
            ProjectClass {
                name: "ants".into(),
                images: photos("train/ants", 3),
            },
            ProjectClass {
                name: "bees".into(),
                images: [photos("train/bees", 2), photos("val/bees", 1)].concat(),
            },
        ],
        settings: PanelSettings {
            chosen_strategy: Some(Strategy::LastBlock),
            train: TrainConfig::new()
                .with_epochs(7)
                .with_strategy(Strategy::LastBlock),
        },
        report_classes: vec!["ants".into(), "bees".into()],
        report: None,
        model: Some(common::weights_bytes()),
    }
}

#[test]
fn real_photos_and_model_round_trip() {
    let original = project();
    let bytes = original.to_bytes().unwrap();
    let back = Project::from_bytes("p.ftproj", &bytes).unwrap();
    assert_eq!(back.classes, original.classes);
    assert_eq!(back.settings, original.settings);
    assert_eq!(back.report_classes, original.report_classes);
    assert_eq!(back.model, original.model);
    assert!(back.classes[1].images[2].val && !back.classes[1].images[0].val);
    for (a, b) in original.classes[0]
        .images
        .iter()
        .zip(&back.classes[0].images)
    {
        let a = load_sample(&a.file, &a.bytes, 0, &LITE0).unwrap();
        let b = load_sample(&b.file, &b.bytes, 0, &LITE0).unwrap();
        assert_eq!(a.image, b.image, "{} decodes differently", a.file);
    }
}

#[test]
fn damaged_project_is_refused_by_name() {
    let bytes = project().to_bytes().unwrap();
    for cut in [7, 1000, bytes.len() / 2, bytes.len() - 1] {
        let err = Project::from_bytes("class.ftproj", &bytes[..cut]).unwrap_err();
        assert!(err.to_string().starts_with("class.ftproj: "), "{err}");
    }
    // A model file is a safetensors file too, but not a project.
    let err = Project::from_bytes("model.safetensors", &common::weights_bytes()).unwrap_err();
    assert!(err.to_string().contains("not a project"), "{err}");
}

#[test]
fn a_project_at_the_largest_size_allowed_saves_and_opens() {
    use finetune::engine::limits::MAX_PROJECT_BYTES;
    let max = MAX_PROJECT_BYTES as usize;
    let of_size = |n: usize| Project {
        classes: vec![
            ProjectClass {
                name: "big".into(),
                images: vec![ProjectImage {
                    file: "big.jpg".into(),
                    bytes: vec![7u8; n],
                    val: false,
                }],
            },
            ProjectClass {
                name: "small".into(),
                images: photos("train/ants", 1),
            },
        ],
        ..Project::default()
    };
    // The header's size is the same for any image of 10 digits' length: measure it once.
    let guess = max - (1 << 20);
    let header = of_size(guess).to_bytes().unwrap().len() - guess;
    let largest = of_size(max - header);
    let bytes = largest.to_bytes().unwrap();
    assert_eq!(bytes.len(), max);
    drop(largest);
    let opened = Project::from_bytes("big.ftproj", &bytes).unwrap();
    assert_eq!(opened.classes[0].images[0].bytes.len(), max - header);
    drop((bytes, opened));
    // One byte more is refused when saving, with the reason, as opening would refuse it.
    let err = of_size(max - header + 1)
        .to_bytes()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1024 MB") && err.contains("could not be opened"),
        "{err}"
    );
}
