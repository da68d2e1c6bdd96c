// The resize of squeezedet's Python Detector (squeezedet.data.transforms.resize_image), pixel for
// pixel: RGB uint8 at any size to the network size, bilinear with half-pixel centres.
//   - An enlargement (width >= w0 and height >= h0, not the same size) is OpenCV's
//     cv2.resize(INTER_LINEAR) on 8-bit pixels, which the Detector uses when OpenCV is installed:
//     11-bit fixed-point weights (scale 2048) for both axes, a horizontal pass into integer rows,
//     and a vertical pass that drops 4 bits, keeps the high 16 bits of each product and rounds
//     with (sum + 2) >> 2. Checked bit for bit against opencv-python-headless 5.1 on x86-64.
//   - Anything else (a shrink in either direction), or { opencv: false } for a Detector that does
//     not use OpenCV, is Pillow's resize(BILINEAR) with its 22-bit fixed-point arithmetic, a
//     filter widened when shrinking (antialiasing) and Pillow 13's order of the two passes.
//     Checked bit for bit against Pillow 13.0.
// Written for squeezedet from the published algorithms; no code taken from elsewhere.

const PILLOW_BITS = 22; // Pillow's 8-bit resampling precision: 32 - 8 - 2
const OPENCV_SCALE = 2048; // OpenCV's INTER_RESIZE_COEF_SCALE (11 bits)

/** Pillow's bilinear coefficients for one axis (precompute_coeffs + normalize_coeffs_8bpc). */
function pillowCoefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0.0;
    const w = new Float64Array(xmax);
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      w[x] = t < 1.0 ? 1.0 - t : 0.0;
      ww += w[x];
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0.0 ? w[x] / ww : w[x];
      kk[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PILLOW_BITS) : 0.5 + k * (1 << PILLOW_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

function pillowClip8(ss) {
  const v = Math.floor(ss / (1 << PILLOW_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** One Pillow resampling pass along x (horizontal) or y of an RGB uint8 image [h][w][3]. */
function pillowPass(src, w, h, outW, outH, horizontal) {
  const { bounds, kk, ksize } = pillowCoefficients(horizontal ? w : h, horizontal ? outW : outH);
  const out = new Uint8Array(outW * outH * 3);
  const half = 1 << (PILLOW_BITS - 1);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const i = horizontal ? x : y;
      const min = bounds[i * 2], n = bounds[i * 2 + 1], k = i * ksize;
      for (let c = 0; c < 3; c++) {
        let ss = half;
        for (let j = 0; j < n; j++) {
          const p = horizontal ? (y * w + min + j) * 3 + c : ((min + j) * w + x) * 3 + c;
          ss += src[p] * kk[k + j];
        }
        out[(y * outW + x) * 3 + c] = pillowClip8(ss);
      }
    }
  }
  return out;
}

/** RGB uint8 [h0][w0][3] → [height][width][3] as Pillow's resize((width, height), BILINEAR):
 * two passes, each rounded to 8 bits; Pillow 13 runs the vertical one first when the height
 * loses more than twice as many pixels as the width (horizontal first otherwise, as before). */
export function resizePillow(rgb, w0, h0, width, height) {
  if (height < h0 && width !== w0 && h0 - height > 2 * (w0 - width)) {
    return pillowPass(pillowPass(rgb, w0, h0, w0, height, false), w0, height, width, height, true);
  }
  let out = rgb, w = w0;
  if (width !== w0) { out = pillowPass(out, w0, h0, width, h0, true); w = width; }
  if (height !== h0) out = pillowPass(out, w, h0, w, height, false);
  return out;
}

/** A float rounded half to even, as OpenCV's saturate_cast<short>(float) (values >= 0 here). */
function roundHalfEven(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** OpenCV's linear taps for one axis: the first source index of each output pixel and its two
 * 11-bit weights. Positions are single-precision floats, as OpenCV computes them; ``clamp``
 * (the horizontal axis) moves a tap that falls off either border onto the edge pixel with weight
 * (2048, 0); the vertical axis keeps the weights and clamps the rows it reads instead. */
function opencvTaps(inSize, outSize, clamp) {
  const scale = 1 / (outSize / inSize);
  const first = new Int32Array(outSize);
  const weights = new Int32Array(outSize * 2);
  for (let d = 0; d < outSize; d++) {
    const f = Math.fround((d + 0.5) * scale - 0.5);
    let s = Math.floor(f), frac = Math.fround(f - s);
    if (clamp && s < 0) { s = 0; frac = 0; }
    if (clamp && s >= inSize - 1) { s = inSize - 1; frac = 0; }
    first[d] = s;
    weights[d * 2] = roundHalfEven(Math.fround(1 - frac) * OPENCV_SCALE);
    weights[d * 2 + 1] = roundHalfEven(frac * OPENCV_SCALE);
  }
  return { first, weights };
}

/** OpenCV's horizontal pass: every source row at the new width, as integers scaled by 2048. */
function opencvRows(rgb, w0, h0, width) {
  const { first, weights } = opencvTaps(w0, width, true);
  const rows = new Int32Array(h0 * width * 3);
  for (let y = 0; y < h0; y++) {
    for (let x = 0; x < width; x++) {
      const left = (y * w0 + first[x]) * 3;
      const right = (y * w0 + Math.min(first[x] + 1, w0 - 1)) * 3;
      const a0 = weights[x * 2], a1 = weights[x * 2 + 1];
      for (let c = 0; c < 3; c++) rows[(y * width + x) * 3 + c] = rgb[left + c] * a0 + rgb[right + c] * a1;
    }
  }
  return rows;
}

/** RGB uint8 [h0][w0][3] → [height][width][3] as cv2.resize(INTER_LINEAR) on uint8 pixels. */
export function resizeOpenCV(rgb, w0, h0, width, height) {
  const rows = opencvRows(rgb, w0, h0, width);
  const { first, weights } = opencvTaps(h0, height, false);
  const n = width * 3;
  const out = new Uint8Array(height * n);
  for (let y = 0; y < height; y++) {
    const top = Math.min(Math.max(first[y], 0), h0 - 1) * n;
    const bottom = Math.min(Math.max(first[y] + 1, 0), h0 - 1) * n;
    const b0 = weights[y * 2], b1 = weights[y * 2 + 1];
    for (let i = 0; i < n; i++) {
      const v = ((((rows[top + i] >> 4) * b0) >> 16) + (((rows[bottom + i] >> 4) * b1) >> 16) + 2) >> 2;
      out[y * n + i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/** RGBA pixels (ImageData) → RGB uint8 [H][W][3] at (W, H): the pixels the Python Detector feeds
 * the model (OpenCV for an enlargement unless ``opencv`` is false, else Pillow; see above). */
export function resizeBilinear(rgba, w0, h0, width, height, opencv = true) {
  const rgb = new Uint8Array(w0 * h0 * 3);
  for (let i = 0; i < w0 * h0; i++) {
    rgb[i * 3] = rgba[i * 4]; rgb[i * 3 + 1] = rgba[i * 4 + 1]; rgb[i * 3 + 2] = rgba[i * 4 + 2];
  }
  if (w0 === width && h0 === height) return rgb;
  if (opencv && width >= w0 && height >= h0) return resizeOpenCV(rgb, w0, h0, width, height);
  return resizePillow(rgb, w0, h0, width, height);
}
