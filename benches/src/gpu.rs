//! The contract's cases on CUDA, at the kernel level (`kernels::cuda`): the autograd engine
//! does not run on the GPU yet, so these time our CUDA kernels directly on device buffers —
//! matmul, the convolution family (forward; forward + input gradient + weight gradient) and
//! the LSTM cell. Every run ends with a stream synchronisation, so the time is the GPU's.

use crate::{dims, shapes, Case};
use autograd::{mask_taps, Error, Mask, Result};
use kernels::cuda::conv::{conv_forward_into, conv_input_grad_into, conv_weight_grad_into};
use kernels::cuda::matmul::{matmul_into, GpuMat};
use kernels::cuda::GpuBuffer;
use kernels::cuda::{Gpu, GpuError};
use kernels::desc::{conv_out_size, ConvGeometry};
use std::sync::Arc;

fn gpu_error(e: GpuError) -> Error {
    Error::invalid("cuda", e.to_string())
}

fn buffer(gpu: &Gpu, n: usize, seed: u64) -> Result<GpuBuffer<f32>> {
    let mut s = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let host: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    gpu.upload(&host).map_err(gpu_error)
}

fn mat(data: &GpuBuffer<f32>, row_stride: usize, col_stride: usize) -> GpuMat<'_, f32> {
    GpuMat {
        data,
        offset: 0,
        row_stride,
        col_stride,
    }
}

/// Every CUDA case of the contract, gpu_only ones included.
pub fn gpu_cases(gpu: Arc<Gpu>) -> Result<Vec<Case>> {
    let mut cases = matmul_cases(&gpu)?;
    cases.extend(conv_cases(&gpu)?);
    Ok(cases)
}

fn matmul_cases(gpu: &Arc<Gpu>) -> Result<Vec<Case>> {
    let spec = shapes();
    let mut cases = Vec::new();
    for c in spec["matmul"].as_array().into_iter().flatten() {
        let (m, k, n) = (dims(c, "m"), dims(c, "k"), dims(c, "n"));
        let (a, b, g) = (
            buffer(gpu, m * k, 1)?,
            buffer(gpu, k * n, 2)?,
            buffer(gpu, m * n, 3)?,
        );
        let (mut out, mut da, mut db) = (
            buffer(gpu, m * n, 0)?,
            buffer(gpu, m * k, 0)?,
            buffer(gpu, k * n, 0)?,
        );
        let (g1, g2) = (gpu.clone(), gpu.clone());
        let (fa, fb) = (
            gpu.copy(&a).map_err(gpu_error)?,
            gpu.copy(&b).map_err(gpu_error)?,
        );
        let mut fout = gpu.copy(&out).map_err(gpu_error)?;
        cases.push(Case {
            group: "matmul".into(),
            name: c["name"].as_str().unwrap_or("?").into(),
            gpu_only: c["gpu_only"].as_bool().unwrap_or(false),
            flops: Some(2 * (m * n * k) as u64),
            fwd: Some(Box::new(move || {
                matmul_into(&g1, m, k, n, mat(&fa, k, 1), mat(&fb, n, 1), &mut fout)
                    .and_then(|_| g1.synchronize())
                    .map_err(gpu_error)
            })),
            // C = A B, dA = G Bᵀ, dB = Aᵀ G
            fwdbwd: Box::new(move || {
                matmul_into(&g2, m, k, n, mat(&a, k, 1), mat(&b, n, 1), &mut out)
                    .and_then(|_| matmul_into(&g2, m, n, k, mat(&g, n, 1), mat(&b, 1, n), &mut da))
                    .and_then(|_| matmul_into(&g2, k, m, n, mat(&a, 1, k), mat(&g, n, 1), &mut db))
                    .and_then(|_| g2.synchronize())
                    .map_err(gpu_error)
            }),
        });
    }
    Ok(cases)
}

/// The geometry of a case: conv2d and masked_conv2d as they are; conv_transpose2d as the
/// input gradient of the convolution it transposes.
fn geometry(group: &str, c: &serde_json::Value) -> Option<ConvGeometry> {
    let (xs, ws) = (crate::conv::shape4(&c["x"]), crate::conv::shape4(&c["w"]));
    let stride = c["stride"].as_u64().unwrap_or(1) as usize;
    let pad = dims(c, "pad");
    let (kh, kw) = (ws[2], ws[3]);
    let mask = match c["mask"].as_str() {
        Some("A") => Some(Mask::A),
        Some(_) => Some(Mask::B),
        None => None,
    };
    let (n, c_in, h, w, c_out) = if group == "conv_transpose2d" {
        // x [n, cin, h, w] is the transposed convolution's input, the conv's output
        let ho = (xs[2] - 1) * stride + kh - 2 * pad;
        let wo = (xs[3] - 1) * stride + kw - 2 * pad;
        (xs[0], ws[1], ho, wo, xs[1])
    } else {
        (xs[0], xs[1], xs[2], xs[3], ws[0])
    };
    Some(ConvGeometry {
        n,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        stride: (stride, stride),
        pad: (pad, pad, pad, pad),
        dilation: (1, 1),
        groups: 1,
        ho: conv_out_size(h, pad, pad, kh, stride, 1)?,
        wo: conv_out_size(w, pad, pad, kw, stride, 1)?,
        taps: mask_taps(kh, kw, mask),
    })
}

fn conv_cases(gpu: &Arc<Gpu>) -> Result<Vec<Case>> {
    let spec = shapes();
    let mut cases = Vec::new();
    for group in ["conv2d", "conv_transpose2d", "masked_conv2d"] {
        for c in spec[group].as_array().into_iter().flatten() {
            let g = geometry(group, c).ok_or_else(|| {
                Error::invalid("gpu_cases", format!("{group} {c}: the kernel does not fit"))
            })?;
            let (x_len, w_len, y_len) = (
                g.n * g.c_in * g.h * g.w,
                g.c_out * g.k_per_group(),
                g.n * g.c_out * g.ho * g.wo,
            );
            // the nominal count (all kh·kw taps, as on the CPU side), masked or not
            let flops = 2 * y_len * g.c_in / g.groups * g.kh * g.kw;
            let (x, w, dy) = (
                buffer(gpu, x_len, 4)?,
                buffer(gpu, w_len, 5)?,
                buffer(gpu, y_len, 6)?,
            );
            let (mut y, mut dx, mut dw) = (
                buffer(gpu, y_len, 0)?,
                buffer(gpu, x_len, 0)?,
                buffer(gpu, w_len, 0)?,
            );
            let transpose = group == "conv_transpose2d";
            let (g1, g2) = (gpu.clone(), gpu.clone());
            let (fg, bg) = (g.clone(), g);
            let (fx, fw, fdy) = (
                gpu.copy(&x).map_err(gpu_error)?,
                gpu.copy(&w).map_err(gpu_error)?,
                gpu.copy(&dy).map_err(gpu_error)?,
            );
            let (mut fy, mut fdx) = (
                gpu.copy(&y).map_err(gpu_error)?,
                gpu.copy(&dx).map_err(gpu_error)?,
            );
            cases.push(Case {
                group: group.into(),
                name: c["name"].as_str().unwrap_or("?").into(),
                gpu_only: c["gpu_only"].as_bool().unwrap_or(false),
                flops: Some(flops as u64),
                fwd: Some(Box::new(move || {
                    let r = if transpose {
                        conv_input_grad_into(&g1, &fdy, &fw, &fg, &mut fdx)
                    } else {
                        conv_forward_into(&g1, &fx, &fw, &fg, &mut fy)
                    };
                    r.and_then(|_| g1.synchronize()).map_err(gpu_error)
                })),
                // the three products, whichever of them is the forward
                fwdbwd: Box::new(move || {
                    conv_forward_into(&g2, &x, &w, &bg, &mut y)
                        .and_then(|_| conv_input_grad_into(&g2, &dy, &w, &bg, &mut dx))
                        .and_then(|_| conv_weight_grad_into(&g2, &x, &dy, &bg, &mut dw))
                        .and_then(|_| g2.synchronize())
                        .map_err(gpu_error)
                }),
            });
        }
    }
    Ok(cases)
}
