"use strict";
// The page of one trained generator, run in this browser by onnxruntime-web (WebAssembly):
// a grid of samples by seed, "more", favourites, a looping latent walk through them, truncation,
// a class picker for conditional runs and a PNG per tile. Nothing is loaded from elsewhere.

const TILES = 16;        // samples per grid
const WALK_FRAMES = 24;  // frames from one key of the walk to the next
const DOWNLOAD_SIDE = 256;

// What the page has done, for the people and the tests that look.
const state = { ready: false, error: null, tiles: [], firstGridMs: null, fps: null,
                walk: { index: 0, cycles: 0, keys: [], frameMs: null } };
window.pgk = state;

const $ = (id) => document.getElementById(id);

function fail(message) {
  state.error = message;
  const status = $("status");
  status.textContent = message;
  status.className = "error";
  $("app").hidden = true;
}

function decodeLatents(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Float32Array(bytes.buffer);
}

// Latents past the seeds the page carries: the page's own draws (a seeded mulberry32 with
// Box-Muller), not numpy's, so "page k" tiles are not what `sample --seed k` gives.
function pageLatent(k, zDim, dist) {
  let a = (k * 2654435761) >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const z = new Float32Array(zDim);
  for (let i = 0; i < zDim; i++) {
    z[i] = dist === "uniform" ? 2 * uniform() - 1
      : Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  }
  return z;
}

// Spherical interpolation as paddle_gan_kit.latent.slerp: keys exact at t = 0, chord when parallel.
function slerp(a, b, t) {
  if (t === 0) return Float32Array.from(a);
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  const cos = Math.min(1, Math.max(-1, dot / Math.max(Math.sqrt(na * nb), 1e-30)));
  const omega = Math.acos(cos), sin = Math.sin(omega);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) {
    out[i] = sin < 1e-6 ? (1 - t) * a[i] + t * b[i]
      : (Math.sin((1 - t) * omega) * a[i] + Math.sin(t * omega) * b[i]) / sin;
  }
  return out;
}

class Generator {
  constructor(session, meta) {
    this.session = session;
    this.meta = meta;
    this.queue = Promise.resolve();  // one run at a time on the one session
  }

  // z: n latents one after the other; label: a class index (conditional runs). Returns n ImageData.
  run(z, n, label) {
    const { z_dim: zDim, inputs } = this.meta;
    const feeds = { [inputs[0]]: new ort.Tensor("float32", z, [n, zDim]) };
    if (inputs.length > 1) {
      feeds[inputs[1]] = new ort.Tensor("int64", BigInt64Array.from({ length: n }, () => BigInt(label)), [n]);
    }
    const next = this.queue.then(() => this.session.run(feeds));
    this.queue = next.catch(() => undefined);
    return next.then((out) => this.images(out[this.session.outputNames[0]].data, n));
  }

  // (n, C, S, S) floats in [-1, 1] -> n ImageData, as paddle_gan_kit.images.to_uint8_images rounds
  images(data, n) {
    const { size, channels } = this.meta;
    const plane = size * size, result = [];
    for (let i = 0; i < n; i++) {
      const image = new ImageData(size, size), px = image.data, base = i * channels * plane;
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) {
          const v = data[base + (channels === 1 ? 0 : c) * plane + p];
          px[4 * p + c] = Math.min(255, Math.max(0, Math.floor((v + 1) * 127.5 + 0.5)));
        }
        px[4 * p + 3] = 255;
      }
      result.push(image);
    }
    return result;
  }
}

function draw(canvas, image) {
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(image, 0, 0);
}

function pngLink(canvas, name) {
  const big = document.createElement("canvas");
  big.width = big.height = Math.max(canvas.width, DOWNLOAD_SIDE - (DOWNLOAD_SIDE % canvas.width));
  const ctx = big.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(canvas, 0, 0, big.width, big.height);
  const link = document.createElement("a");
  link.textContent = "PNG";
  link.title = "download this image";
  link.download = name;
  link.href = big.toDataURL("image/png");
  return link;
}

async function main() {
  const started = performance.now();
  if (typeof WebAssembly !== "object") {
    fail("This browser cannot run the generator: it has no WebAssembly. Open the page in a current Chrome, " +
         "Edge, Firefox or Safari.");
    return;
  }
  let meta;
  try {
    const response = await fetch("meta.json");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    meta = await response.json();
  } catch (err) {
    fail(`Could not read meta.json, the description of the generator (${err.message}). Serve the folder ` +
         "over HTTP, e.g. python -m http.server, rather than opening the file.");
    return;
  }
  const classes = meta.classes || null;
  document.title = `${meta.run}: GAN samples`;
  $("title").textContent = meta.run;
  $("about").textContent = `${meta.model}, ${meta.size}x${meta.size} px, step ${meta.step}` +
    (classes ? `, ${classes.length} classes` : "") + ` - running in this browser`;
  $("footer").textContent = `Seeds 0 to ${meta.seeds.count - 1} are the images "python -m paddle_gan_kit.sample ` +
    `RUN --seed k" gives; "page k" tiles past them are this page's own random draws. Truncation scales z ` +
    `towards 0. ${meta.runtime} (WebAssembly); nothing leaves this browser.`;
  if (typeof ort === "undefined") {
    fail("The ONNX runtime (ort/ort.wasm.min.js) did not load; export the page again with " +
         "python -m paddle_gan_kit.export RUN --format web.");
    return;
  }
  ort.env.wasm.wasmPaths = new URL("ort/", window.location.href).href;
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which plain static hosts do not give
  let generator;
  try {
    const session = await ort.InferenceSession.create("generator.onnx", { executionProviders: ["wasm"] });
    generator = new Generator(session, meta);
  } catch (err) {
    fail(`Could not load the generator (generator.onnx): ${err.message || err}`);
    return;
  }

  const carried = decodeLatents(meta.seeds.z);
  const latent = (seed) => seed < meta.seeds.count
    ? carried.subarray(seed * meta.z_dim, (seed + 1) * meta.z_dim) : pageLatent(seed, meta.z_dim, meta.z_dist);
  const view = { offset: 0, label: 0, psi: 1, favourites: [] };
  const scaled = (seed) => latent(seed).map((v) => v * view.psi);
  const name = (seed) => (seed < meta.seeds.count ? `seed ${seed}` : `page ${seed}`);

  if (classes) {
    const select = $("class");
    classes.forEach((c, i) => select.add(new Option(c, String(i))));
    $("class-label").hidden = false;
    select.addEventListener("change", () => { view.label = Number(select.value); renderGrid(); renderFavourites(); });
  }

  function tile(seed, image, label) {
    const figure = document.createElement("figure");
    const canvas = document.createElement("canvas");
    draw(canvas, image);
    canvas.title = "click: keep as a favourite (or drop it)";
    canvas.dataset.seed = String(seed);
    canvas.addEventListener("click", () => toggleFavourite(seed, label));
    const caption = document.createElement("figcaption");
    caption.append(document.createTextNode(name(seed) + (classes ? ` ${classes[label]}` : "")),
                   pngLink(canvas, `${meta.run}-${seed}${classes ? "-" + classes[label] : ""}.png`));
    figure.append(canvas, caption);
    if (view.favourites.some((f) => f.seed === seed && f.label === label)) figure.classList.add("favourite");
    return figure;
  }

  async function renderGrid() {
    const seeds = Array.from({ length: TILES }, (_, i) => view.offset + i);
    const z = new Float32Array(TILES * meta.z_dim);
    seeds.forEach((s, i) => z.set(scaled(s), i * meta.z_dim));
    const label = view.label;
    const images = await generator.run(z, TILES, label);
    $("grid").replaceChildren(...seeds.map((s, i) => tile(s, images[i], label)));
    state.tiles = seeds.map((seed) => ({ seed, label, psi: view.psi }));
    if (state.firstGridMs === null) state.firstGridMs = performance.now() - started;
  }

  async function renderFavourites() {
    const box = $("favourites");
    if (!view.favourites.length) {
      box.innerHTML = '<p class="hint">None yet: click tiles above.</p>';
      return;
    }
    const figures = [];
    for (const f of view.favourites) {
      const [image] = await generator.run(scaled(f.seed), 1, f.label);
      figures.push(tile(f.seed, image, f.label));
    }
    box.replaceChildren(...figures);
  }

  function toggleFavourite(seed, label) {
    const at = view.favourites.findIndex((f) => f.seed === seed && f.label === label);
    if (at >= 0) view.favourites.splice(at, 1); else view.favourites.push({ seed, label });
    for (const canvas of document.querySelectorAll("#grid canvas")) {
      const mine = view.favourites.some((f) => f.seed === Number(canvas.dataset.seed) && f.label === view.label);
      canvas.parentElement.classList.toggle("favourite", mine);
    }
    renderFavourites();
  }

  // The walk's keys: the favourites when there are two or more, else the grid's first three seeds.
  function walkKeys() {
    const keys = view.favourites.length >= 2 ? view.favourites.map((f) => f.seed) : [view.offset, view.offset + 1,
      view.offset + 2];
    $("walk-note").textContent = view.favourites.length >= 2 ? `(through your ${keys.length} favourites)`
      : `(through ${keys.map(name).join(", ")}; keep two or more favourites to walk through them)`;
    return keys;
  }

  async function walkLoop() {
    const canvas = $("walk");
    let second = performance.now(), frames = 0;
    for (;;) {
      const keys = walkKeys();
      if (keys.join() !== state.walk.keys.join()) { state.walk.keys = keys; state.walk.index = 0; }
      const total = keys.length * WALK_FRAMES, i = state.walk.index % total;
      const k = Math.floor(i / WALK_FRAMES), t = (i % WALK_FRAMES) / WALK_FRAMES;
      const t0 = performance.now();
      const [image] = await generator.run(slerp(scaled(keys[k]), scaled(keys[(k + 1) % keys.length]), t), 1,
                                          view.label);
      draw(canvas, image);
      const ms = performance.now() - t0;
      state.walk.frameMs = state.walk.frameMs === null ? ms : 0.9 * state.walk.frameMs + 0.1 * ms;
      state.walk.index = i + 1;
      if (state.walk.index >= total) { state.walk.index = 0; state.walk.cycles += 1; }
      frames += 1;
      const now = performance.now();
      if (now - second >= 1000) {
        state.fps = (1000 * frames) / (now - second);
        $("fps").textContent = `${state.fps.toFixed(0)} frames/s (${state.walk.frameMs.toFixed(1)} ms per frame)`;
        second = now;
        frames = 0;
      }
      await new Promise((resolve) => requestAnimationFrame(resolve));
    }
  }

  $("more").addEventListener("click", () => { view.offset += TILES; renderGrid(); });
  $("truncation").addEventListener("input", (event) => {
    view.psi = Number(event.target.value);
    $("truncation-value").textContent = view.psi.toFixed(2);
    renderGrid();
    renderFavourites();
  });

  try {
    $("app").hidden = false;
    await renderGrid();
    $("status").textContent = "";
    state.ready = true;
    walkLoop().catch((err) => fail(`The latent walk stopped: ${err.message || err}`));
  } catch (err) {
    fail(`The generator failed to run: ${err.message || err}`);
  }
}

main();
