//! What each of our CUDA kernels costs, as ptxas reports it for sm_80, sm_90 and sm_100: a
//! Markdown table (registers per thread, static shared memory per block, spills), the one in
//! BENCHMARKS.md. Needs only the NVRTC library (`pip install nvidia-cuda-nvrtc`, its folder on
//! LD_LIBRARY_PATH), no GPU.
//!
//! `cargo run -p kernels --release --example cuda_resources [-- --cubin-dir DIR]`: with
//! `--cubin-dir`, each module's CUBIN is also written there as `MODULE.ARCH.cubin`, for
//! `cuobjdump -sass` (the `nvidia-cuda-cuobjdump` wheel).

use kernels::cuda::cubin::{compile_cubin, parse_ptxas_report, ARCHITECTURES, MODULES};
use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !kernels::cuda::cubin::nvrtc_present() {
        return Err("no NVRTC library: pip install nvidia-cuda-nvrtc and put its lib folder on LD_LIBRARY_PATH".into());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cubin_dir = match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--cubin-dir" => Some(std::path::PathBuf::from(dir)),
        _ => return Err("usage: cuda_resources [--cubin-dir DIR]".into()),
    };
    if let Some(dir) = &cubin_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // (module, kernel) -> one cell per architecture
    let mut rows: BTreeMap<(&str, String), Vec<String>> = BTreeMap::new();
    for (a, arch) in ARCHITECTURES.iter().enumerate() {
        for (module, source) in MODULES {
            let compiled = compile_cubin(module, source, arch)?;
            if let Some(dir) = &cubin_dir {
                let path = dir.join(format!("{module}.{arch}.cubin"));
                std::fs::write(&path, &compiled.cubin)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            for k in parse_ptxas_report(&compiled.log) {
                let cells = rows
                    .entry((module, k.kernel.clone()))
                    .or_insert_with(|| vec![String::new(); ARCHITECTURES.len()]);
                let spills = k.spill_store_bytes + k.spill_load_bytes;
                cells[a] = format!(
                    "{} / {} / {}",
                    k.registers,
                    k.shared_bytes,
                    if spills == 0 {
                        "-".to_string()
                    } else {
                        format!("{spills} B")
                    }
                );
            }
        }
    }
    println!("registers / static shared bytes / spills, per kernel and architecture\n");
    println!("| module | kernel | {} |", ARCHITECTURES.join(" | "));
    println!("|---|---|{}", "---|".repeat(ARCHITECTURES.len()));
    for ((module, kernel), cells) in rows {
        println!("| {module} | `{kernel}` | {} |", cells.join(" | "));
    }
    Ok(())
}
