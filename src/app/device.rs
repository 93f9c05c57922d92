//! Which device the worker runs the network on, and why: a hardware WebGPU adapter, else burn's
//! CPU backend in the wasm itself. Decided from what the page finds (`navigator.gpu`, the
//! adapter) and the URL's `?device=`; target-independent, so every case is tested natively.

use serde::{Deserialize, Serialize};

/// Browsers that ship WebGPU, named wherever it is missing.
const WEBGPU_BROWSERS: &str =
    "Chrome or Edge 113 or newer, Safari 26 or newer, or Firefox 141 or newer on Windows";

/// Where the network runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    WebGpu,
    Cpu,
}

impl DeviceKind {
    /// The `?device=` spelling (and `data-device`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::WebGpu => "webgpu",
            DeviceKind::Cpu => "cpu",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "webgpu" | "gpu" => Some(DeviceKind::WebGpu),
            "cpu" => Some(DeviceKind::Cpu),
            _ => None,
        }
    }

    pub fn other(self) -> Self {
        match self {
            DeviceKind::WebGpu => DeviceKind::Cpu,
            DeviceKind::Cpu => DeviceKind::WebGpu,
        }
    }
}

/// What the page found out about WebGPU.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Probe {
    /// `navigator.gpu` exists.
    pub api: bool,
    /// Served over https or from localhost (WebGPU exists only there).
    pub secure: bool,
    /// The adapter `requestAdapter()` gave, if any.
    pub adapter: Option<Adapter>,
    /// Why `requestAdapter()` failed, if it threw.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    /// "google swiftshader" style, from `GPUAdapter.info`.
    pub name: String,
    /// `info.isFallbackAdapter`.
    pub fallback: bool,
}

impl Adapter {
    /// A CPU implementation of WebGPU: flagged as a fallback, or one of the known software
    /// renderers by name.
    pub fn is_software(&self) -> bool {
        let name = self.name.to_ascii_lowercase();
        self.fallback
            || ["swiftshader", "llvmpipe", "lavapipe"]
                .iter()
                .any(|s| name.contains(s))
    }
}

/// The device chosen, and the sentence that says why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub kind: DeviceKind,
    /// The adapter's name, when WebGPU is used or available.
    pub adapter: Option<String>,
    pub reason: String,
    /// The other device can be chosen too (WebGPU needs an adapter).
    pub can_switch: bool,
}

/// What the device check found on this computer (kept by the page for later visits): the
/// estimated time of one training run on each device, with the adapter it was compared on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// The finding holds for this adapter only (a new GPU or browser is measured again).
    pub adapter: String,
    /// The run it timed, e.g. "head training of 2 classes x 20 photos".
    pub run: String,
    pub webgpu_s: f64,
    pub cpu_s: f64,
}

impl Measured {
    pub fn faster(&self) -> DeviceKind {
        if self.webgpu_s <= self.cpu_s {
            DeviceKind::WebGpu
        } else {
            DeviceKind::Cpu
        }
    }
}

/// Most helper workers on the CPU: each holds its own copy of the network (about 50 MB with
/// its wasm instance), and beyond a few the messages eat the gain.
pub const MAX_HELPERS: usize = 3;

/// Helper workers for the CPU backend: one per core beyond the worker's own (`cores` from
/// `navigator.hardwareConcurrency`), at most [`MAX_HELPERS`]; `forced` (`?helpers=`) sets it.
pub fn helper_count(cores: usize, forced: Option<usize>) -> usize {
    forced.unwrap_or(cores.saturating_sub(1)).min(MAX_HELPERS)
}

/// Images per timed batch of the device check (the button, a bare `?bench`): small enough that
/// a software GPU (SwiftShader: about 6 s an image, first pass with its shader compiles)
/// finishes the check in under a minute.
pub const BENCH_BATCH: usize = 2;

/// The largest batch the device check takes (`?bench=N`): a full step's activations grow
/// with the batch, and a wasm page has 4 GB of memory at most.
pub const MAX_BENCH_BATCH: usize = 32;

/// The device check's batch: `batch` kept within 1..=[`MAX_BENCH_BATCH`].
pub fn bench_batch(batch: usize) -> usize {
    batch.clamp(1, MAX_BENCH_BATCH)
}

/// The batch `?bench=N` asks for (`asked`: the parameter's value): N within the limits of
/// [`bench_batch`]; [`BENCH_BATCH`] for a bare `?bench` or an N that is no number.
pub fn asked_bench_batch(asked: Option<&str>) -> usize {
    asked
        .and_then(|n| n.trim().parse::<usize>().ok())
        .map_or(BENCH_BATCH, bench_batch)
}

/// Chooses the device: `forced` (`?device=`) wins where it can be honoured; else what the
/// device check `measured` with this adapter; else a hardware adapter means WebGPU, and
/// anything else (no API, no adapter, a software adapter, which runs the network slower than
/// the CPU backend does) means the CPU.
pub fn choose(probe: &Probe, forced: Option<DeviceKind>, measured: Option<&Measured>) -> Choice {
    let adapter = probe.adapter.clone();
    let can_switch = adapter.is_some();
    let cpu = |reason: String| Choice {
        kind: DeviceKind::Cpu,
        adapter: adapter.as_ref().map(|a| a.name.clone()),
        reason,
        can_switch,
    };
    let why_not = match &adapter {
        None if !probe.api && !probe.secure => format!(
            "WebGPU only works on secure pages (https or localhost); the network runs on the CPU, \
             which is slower. Served over https, {WEBGPU_BROWSERS} would use the GPU."
        ),
        None if !probe.api => format!(
            "This browser has no WebGPU, so the network runs on the CPU (slower). \
             {WEBGPU_BROWSERS} would use the GPU."
        ),
        None => format!(
            "This browser has WebGPU but offers no GPU adapter{}: the GPU may be blocked or \
             disabled in its settings (Chrome on Linux needs chrome://flags/#enable-unsafe-webgpu). \
             The network runs on the CPU (slower).",
            probe
                .error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
        Some(a) if a.is_software() => format!(
            "The WebGPU adapter ({}) is a software renderer on the CPU, slower here than the \
             app's own CPU backend, so the network runs on the CPU.",
            a.name
        ),
        Some(_) => String::new(),
    };
    match (forced, &adapter) {
        (Some(DeviceKind::Cpu), _) => {
            cpu("The CPU, as this page's address asks (?device=cpu).".into())
        }
        (Some(DeviceKind::WebGpu), Some(a)) => Choice {
            kind: DeviceKind::WebGpu,
            adapter: Some(a.name.clone()),
            reason: format!(
                "WebGPU on {}, as this page's address asks (?device=webgpu).",
                a.name
            ),
            can_switch,
        },
        (Some(DeviceKind::WebGpu), None) => {
            cpu(format!("?device=webgpu asks for WebGPU, but: {why_not}"))
        }
        (None, Some(a)) if measured.is_some_and(|m| m.adapter == a.name) => {
            let m = measured.expect("checked above");
            let faster = m.faster();
            let reason = format!(
                "The device check on this computer found {} faster ({}: about {:.0} s on WebGPU, \
                 {:.0} s on the CPU), so the network runs there.",
                match faster {
                    DeviceKind::WebGpu => format!("WebGPU on {}", a.name),
                    DeviceKind::Cpu => "the CPU".to_string(),
                },
                m.run,
                m.webgpu_s,
                m.cpu_s
            );
            match faster {
                DeviceKind::WebGpu => Choice {
                    kind: DeviceKind::WebGpu,
                    adapter: Some(a.name.clone()),
                    reason,
                    can_switch,
                },
                DeviceKind::Cpu => cpu(reason),
            }
        }
        (None, Some(a)) if !a.is_software() => Choice {
            kind: DeviceKind::WebGpu,
            adapter: Some(a.name.clone()),
            reason: format!("WebGPU on {}.", a.name),
            can_switch,
        },
        (None, _) => cpu(why_not),
    }
}

/// The reason when WebGPU was chosen but its device would not start.
pub fn webgpu_failed(choice: &Choice, error: &str) -> Choice {
    Choice {
        kind: DeviceKind::Cpu,
        adapter: choice.adapter.clone(),
        reason: format!(
            "WebGPU on {} did not start ({error}); the network runs on the CPU (slower).",
            choice.adapter.as_deref().unwrap_or("this adapter")
        ),
        can_switch: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, fallback: bool) -> Probe {
        Probe {
            api: true,
            secure: true,
            adapter: Some(Adapter {
                name: name.into(),
                fallback,
            }),
            error: None,
        }
    }

    fn measured(adapter: &str, webgpu_s: f64, cpu_s: f64) -> Measured {
        Measured {
            adapter: adapter.into(),
            run: "head training of 2 classes x 20 photos".into(),
            webgpu_s,
            cpu_s,
        }
    }

    #[test]
    fn the_device_check_decides_for_the_adapter_it_measured() {
        // A software adapter the check found faster than the CPU: WebGPU after all.
        let soft = with("google swiftshader", true);
        let quick_gpu = measured("google swiftshader", 20.0, 60.0);
        let c = choose(&soft, None, Some(&quick_gpu));
        assert_eq!(c.kind, DeviceKind::WebGpu);
        assert!(c.reason.contains("device check"), "{}", c.reason);
        assert!(c.reason.contains("20 s on WebGPU"), "{}", c.reason);
        // A hardware adapter slower than the CPU here: the CPU, and the GPU one click away.
        let hard = with("nvidia rtx", false);
        let c = choose(&hard, None, Some(&measured("nvidia rtx", 90.0, 30.0)));
        assert_eq!(c.kind, DeviceKind::Cpu);
        assert!(c.can_switch);
        assert!(c.reason.contains("found the CPU faster"), "{}", c.reason);
        // A finding for another adapter says nothing about this one.
        let c = choose(&soft, None, Some(&measured("nvidia rtx", 1.0, 30.0)));
        assert_eq!(c.kind, DeviceKind::Cpu);
        assert!(!c.reason.contains("device check"));
        // The address still wins.
        let c = choose(&soft, Some(DeviceKind::Cpu), Some(&quick_gpu));
        assert_eq!(c.kind, DeviceKind::Cpu);
        // No adapter now: the CPU, whatever was measured before.
        let none = Probe {
            api: true,
            secure: true,
            adapter: None,
            error: None,
        };
        assert_eq!(choose(&none, None, Some(&quick_gpu)).kind, DeviceKind::Cpu);
    }

    #[test]
    fn one_helper_per_spare_core_up_to_the_cap() {
        assert_eq!(helper_count(1, None), 0);
        assert_eq!(helper_count(2, None), 1);
        assert_eq!(helper_count(4, None), 3);
        assert_eq!(helper_count(16, None), MAX_HELPERS);
        assert_eq!(helper_count(16, Some(0)), 0);
        assert_eq!(helper_count(2, Some(2)), 2);
        assert_eq!(helper_count(2, Some(99)), MAX_HELPERS);
    }

    #[test]
    fn the_device_check_batch_is_asked_by_address_within_limits() {
        assert_eq!(asked_bench_batch(None), BENCH_BATCH);
        assert_eq!(asked_bench_batch(Some("")), BENCH_BATCH);
        assert_eq!(asked_bench_batch(Some("sixteen")), BENCH_BATCH);
        assert_eq!(asked_bench_batch(Some("-3")), BENCH_BATCH);
        assert_eq!(asked_bench_batch(Some("16")), 16);
        assert_eq!(asked_bench_batch(Some("0")), 1);
        assert_eq!(asked_bench_batch(Some("1000")), MAX_BENCH_BATCH);
        assert_eq!(bench_batch(0), 1);
        assert_eq!(bench_batch(usize::MAX), MAX_BENCH_BATCH);
    }

    #[test]
    fn a_hardware_adapter_means_webgpu() {
        let c = choose(&with("nvidia ampere", false), None, None);
        assert_eq!(c.kind, DeviceKind::WebGpu);
        assert!(c.reason.contains("nvidia ampere"));
        assert!(c.can_switch);
    }

    #[test]
    fn no_api_no_adapter_or_a_software_adapter_mean_the_cpu() {
        let none = Probe {
            api: false,
            secure: true,
            ..Probe::default()
        };
        let c = choose(&none, None, None);
        assert_eq!(c.kind, DeviceKind::Cpu);
        assert!(
            c.reason.contains("no WebGPU") && c.reason.contains("Chrome"),
            "{}",
            c.reason
        );
        assert!(!c.can_switch);

        let insecure = Probe::default();
        assert!(
            choose(&insecure, None, None)
                .reason
                .contains("secure pages")
        );

        let no_adapter = Probe {
            api: true,
            secure: true,
            ..Probe::default()
        };
        let c = choose(&no_adapter, None, None);
        assert_eq!(c.kind, DeviceKind::Cpu);
        assert!(c.reason.contains("no GPU adapter"), "{}", c.reason);

        for (name, fallback) in [
            ("google swiftshader", true),
            ("mesa llvmpipe", false),
            ("lavapipe", false),
        ] {
            let c = choose(&with(name, fallback), None, None);
            assert_eq!(c.kind, DeviceKind::Cpu, "{name}");
            assert!(c.reason.contains("software renderer"), "{}", c.reason);
            assert!(c.can_switch);
        }
    }

    #[test]
    fn the_address_forces_a_device_where_it_can() {
        let soft = with("google swiftshader", true);
        assert_eq!(
            choose(&soft, Some(DeviceKind::WebGpu), None).kind,
            DeviceKind::WebGpu
        );
        let hard = with("nvidia ampere", false);
        let c = choose(&hard, Some(DeviceKind::Cpu), None);
        assert_eq!(c.kind, DeviceKind::Cpu);
        assert!(c.reason.contains("?device=cpu"));
        // WebGPU cannot be forced where there is none.
        let c = choose(&Probe::default(), Some(DeviceKind::WebGpu), None);
        assert_eq!(c.kind, DeviceKind::Cpu);
        assert!(c.reason.contains("?device=webgpu asks for WebGPU"));
    }

    #[test]
    fn names_round_trip() {
        for k in [DeviceKind::WebGpu, DeviceKind::Cpu] {
            assert_eq!(DeviceKind::from_name(k.name()), Some(k));
            assert_eq!(k.other().other(), k);
        }
        assert_eq!(DeviceKind::from_name("tpu"), None);
    }
}
