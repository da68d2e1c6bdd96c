// SqueezeDet in the browser with ONNX Runtime Web: the pre- and post-processing of squeezedet's
// Python Detector (squeezedet.inference.detector), step for step:
//   the resize to the network size (resize.js: the very pixels Python feeds the model, OpenCV's
//   bilinear for an enlargement and Pillow's otherwise), float32 [1, 3, H, W] RGB 0-255 (the
//   graph normalises), the raw ConvDet head, score = max_c p(c) * sigmoid(confidence), the top 64
//   anchors, box decoding with the linear continuation of exp above 1, clipping to the network
//   image, the score threshold, greedy NMS per class at IoU 0.4, boxes scaled to the original
//   image's pixels. Written for squeezedet; no code taken from elsewhere.
import * as ort from "./ort/ort.wasm.min.mjs";
import { resizeBilinear } from "./resize.js";

export { resizeBilinear };

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
// threads need a cross-origin isolated page (COOP/COEP headers), which a plain static server
// does not give: one thread there
ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

/** RGB uint8 [H][W][3] → float32 [1, 3, H, W] 0-255 (the graph normalises). */
export function toTensor(rgb, width, height) {
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    data[i] = rgb[i * 3]; data[plane + i] = rgb[i * 3 + 1]; data[2 * plane + i] = rgb[i * 3 + 2];
  }
  return new ort.Tensor("float32", data, [1, 3, height, width]);
}

/** Anchors xyxy [gh * gw * K][4] in (row, column, anchor) order, as ops.anchors.make_anchors. */
export function makeAnchors(gw, gh, width, height, shapes, centers) {
  const anchors = [];
  for (let i = 0; i < gh; i++) {
    for (let j = 0; j < gw; j++) {
      const cx = centers === "cell" ? (j + 0.5) * width / gw : (j + 1) * width / (gw + 1);
      const cy = centers === "cell" ? (i + 0.5) * height / gh : (i + 1) * height / (gh + 1);
      for (const [w, h] of shapes) anchors.push([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]);
    }
  }
  return anchors;
}

function safeExp(x) { return x > 1.0 ? Math.E * x : Math.exp(x); }

function iou(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / Math.max(union, 1e-12) : 0;
}

/** Raw head [1, K*(C+5), gh, gw] → detections [{label, score, box}] in original pixels. */
export function postprocess(head, dims, meta, origW, origH, opts = {}) {
  // the candidates and NMS of the model's training run when its export recorded them
  const run = meta.postprocess || {};
  const { conf = 0.4, topK = run.top_k ?? 64, nmsIou = run.nms_iou ?? 0.4 } = opts;
  const [width, height] = meta.input_size;
  const K = meta.anchor_shapes.length, C = meta.class_names.length;
  const gh = dims[2], gw = dims[3], cells = gh * gw;
  const at = (ch, cell) => head[ch * cells + cell];
  const scores = new Float64Array(cells * K), labels = new Int32Array(cells * K);
  for (let cell = 0; cell < cells; cell++) {
    for (let k = 0; k < K; k++) {
      let best = -Infinity, label = 0, sum = 0;
      for (let c = 0; c < C; c++) {
        const l = at(k * C + c, cell);
        if (l > best) { best = l; label = c; }
      }
      for (let c = 0; c < C; c++) sum += Math.exp(at(k * C + c, cell) - best);
      const confidence = 1 / (1 + Math.exp(-at(K * C + k, cell)));
      scores[cell * K + k] = confidence / sum;
      labels[cell * K + k] = label;
    }
  }
  const order = Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b);
  const anchors = makeAnchors(gw, gh, width, height, meta.anchor_shapes, meta.anchor_centers);
  const kept = [];
  for (const a of order.slice(0, Math.min(topK, order.length))) {
    if (scores[a] < conf) continue;
    const cell = Math.floor(a / K), k = a % K, d = (j) => at(K * C + K + 4 * k + j, cell);
    const [x1, y1, x2, y2] = anchors[a];
    const aw = x2 - x1, ah = y2 - y1;
    const cx = (x1 + x2) / 2 + d(0) * aw, cy = (y1 + y2) / 2 + d(1) * ah;
    const w = aw * safeExp(d(2)), h = ah * safeExp(d(3));
    const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
    const box = [clip(cx - w / 2, width), clip(cy - h / 2, height),
                 clip(cx + w / 2, width), clip(cy + h / 2, height)];
    if (kept.some((o) => o.labelId === labels[a] && iou(o.box, box) > nmsIou)) continue;
    kept.push({ labelId: labels[a], score: scores[a], box });
  }
  const sx = origW / width, sy = origH / height;
  return kept.map((o) => ({
    label: meta.class_names[o.labelId], score: o.score,
    box: [o.box[0] * sx, o.box[1] * sy, o.box[2] * sx, o.box[3] * sy],
  }));
}

/** The exported model beside this module: {session, meta}. */
export async function loadModel(base = new URL(".", import.meta.url).href) {
  const response = await fetch(new URL("model.onnx.json", base));
  if (!response.ok) throw new Error(`model.onnx.json: HTTP ${response.status}`);
  const meta = await response.json();
  const session = await ort.InferenceSession.create(new URL("model.onnx", base).href,
                                                    { executionProviders: ["wasm"] });
  return { session, meta };
}

/** Detections for RGBA pixels of any size (an ImageData's data). ``opts.opencv = false``
 * enlarges with Pillow's filter, as a Detector without OpenCV (or on eager PyTorch) does. */
export async function detect(model, rgba, w0, h0, opts = {}) {
  const [width, height] = model.meta.input_size;
  const rgb = resizeBilinear(rgba, w0, h0, width, height, opts.opencv !== false);
  const input = toTensor(rgb, width, height);
  const outputs = await model.session.run({ [model.session.inputNames[0]]: input });
  const head = outputs[model.session.outputNames[0]];
  return postprocess(head.data, head.dims, model.meta, w0, h0, opts);
}

/** The number of WebAssembly threads ONNX Runtime Web runs with. */
export function threads() { return ort.env.wasm.numThreads; }
