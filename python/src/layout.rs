//! How a checked buffer looks to numpy: one view (offset, shape, strides, dtype) per
//! plane, from the caps and the layout `trust` accepted.

use gst_video::VideoFormatFlags;
use gstshmring::codec::trust::{Checked, Format, has_rows, plane_extent};

/// One array over a frame's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// First byte, from the frame's start.
    pub offset: usize,
    /// numpy shape.
    pub shape: Vec<usize>,
    /// numpy strides in bytes.
    pub strides: Vec<isize>,
    /// numpy dtype string.
    pub dtype: &'static str,
}

/// The views of a buffer of `len` bytes that `format.check` accepted as `checked`.
///
/// Every view lies inside the `len` bytes: for video, `trust` saw that each plane's
/// rows (stride × rows, the last row only its whole pixels) fit the buffer, and a
/// view reads no more of a row than those pixels; for audio, whole frames.
pub fn views(format: &Format, checked: &Checked, len: usize) -> Vec<View> {
    match format {
        Format::Video(info) => video(info, checked, len),
        Format::Audio(info) => audio(info, checked, len),
        Format::Other => vec![bytes(len)],
    }
}

fn bytes(len: usize) -> View {
    View {
        offset: 0,
        shape: vec![len],
        strides: vec![1],
        dtype: "u1",
    }
}

fn video(info: &gst_video::VideoInfo, checked: &Checked, len: usize) -> Vec<View> {
    // Tiled, bit-packed and palette formats have no rows numpy could index: the
    // frame's bytes as they are.
    if !has_rows(info) {
        return vec![bytes(len)];
    }
    let finfo = info.format_info();
    let n = info.n_planes() as usize;
    let n_components = finfo.n_components() as usize;
    let (offsets, strides): (Vec<usize>, Vec<i32>) = match &checked.video {
        Some((o, s)) => (o.clone(), s.clone()),
        None => (info.offset()[..n].to_vec(), info.stride()[..n].to_vec()),
    };
    let little = finfo.flags().contains(VideoFormatFlags::LE);
    (0..n)
        .map(|p| {
            let comps: Vec<usize> = (0..n_components)
                .filter(|&c| finfo.plane()[c] as usize == p)
                .collect();
            let (row, rows) = plane_extent(info, p);
            let stride = strides[p] as isize;
            let fallback = View {
                offset: offsets[p],
                shape: vec![rows as usize, row as usize],
                strides: vec![stride, 1],
                dtype: "u1",
            };
            // Pixels of one element size, every component of the plane at the same
            // pixel stride and width: rows × pixels × channels (RGBA, NV12's UV,
            // 16-bit gray); anything else (YUY2's 2-pixel groups, RGB16's bit
            // fields) rows of bytes.
            let first = comps[0];
            let pstride = finfo.pixel_stride()[first] as usize;
            let width = finfo.scale_width(first as u8, info.width()) as usize;
            let depth = finfo.depth()[first];
            let elem = match depth {
                8 => 1,
                9..=16 => 2,
                _ => return fallback,
            };
            let uniform = comps.iter().all(|&c| {
                finfo.pixel_stride()[c] as usize == pstride
                    && finfo.scale_width(c as u8, info.width()) as usize == width
                    && finfo.depth()[c] == depth
                    && finfo.poffset()[c] as usize % elem == 0
                    && finfo.shift()[c] + depth <= 8 * elem as u32
            });
            if !uniform || pstride % elem != 0 {
                return fallback;
            }
            let dtype = match (elem, little) {
                (1, _) => "u1",
                (_, true) => "<u2",
                (_, false) => ">u2",
            };
            let channels = pstride / elem;
            let (shape, strides) = if channels == 1 {
                (vec![rows as usize, width], vec![stride, pstride as isize])
            } else {
                (
                    vec![rows as usize, width, channels],
                    vec![stride, pstride as isize, elem as isize],
                )
            };
            View {
                offset: offsets[p],
                shape,
                strides,
                dtype,
            }
        })
        .collect()
}

fn audio(info: &gst_audio::AudioInfo, checked: &Checked, len: usize) -> Vec<View> {
    let bpf = info.bpf() as usize;
    let channels = info.channels() as usize;
    let frames = len / bpf;
    let f = info.format_info();
    let width = f.width() as usize;
    let dtype = match (width, f.is_float(), f.is_signed(), f.is_little_endian()) {
        (8, _, true, _) => Some("i1"),
        (8, _, false, _) => Some("u1"),
        (16, false, true, true) => Some("<i2"),
        (16, false, true, false) => Some(">i2"),
        (16, false, false, true) => Some("<u2"),
        (16, false, false, false) => Some(">u2"),
        (32, false, true, true) => Some("<i4"),
        (32, false, true, false) => Some(">i4"),
        (32, false, false, true) => Some("<u4"),
        (32, false, false, false) => Some(">u4"),
        (32, true, _, true) => Some("<f4"),
        (32, true, _, false) => Some(">f4"),
        (64, true, _, true) => Some("<f8"),
        (64, true, _, false) => Some(">f8"),
        _ => None,
    };
    let bps = width / 8;
    match (dtype, checked.planar_samples) {
        // 24-bit samples in 3 bytes: each frame's bytes.
        (None, _) => vec![View {
            offset: 0,
            shape: vec![frames, bpf],
            strides: vec![bpf as isize, 1],
            dtype: "u1",
        }],
        // Non-interleaved: one plane of `samples` per channel, in channel order.
        (Some(dtype), Some(samples)) => vec![View {
            offset: 0,
            shape: vec![channels, samples],
            strides: vec![(samples * bps) as isize, bps as isize],
            dtype,
        }],
        (Some(dtype), None) => vec![View {
            offset: 0,
            shape: vec![frames, channels],
            strides: vec![bpf as isize, bps as isize],
            dtype,
        }],
    }
}
