/* Direct grouped 2-D convolution for small convs and convs with few input channels x taps,
 * where im2col plus a BLAS call costs more in passes over memory and per-call overhead than the arithmetic
 * (mobilenet's 3->16 stem, the convs of small images).
 *
 * Per group, the zero-padded input channels are split into stride phases (s_h * s_w planes of [hq][wq]
 * each), so every tap reads a contiguous run of one phase plane. Outputs are computed on the "wide" grid
 * [oh][wq] flattened: output q reads q + off[t] for tap t, so a block of VL consecutive outputs is one
 * vector load per tap, even across row ends (the wq - ow extra columns per row are computed and dropped).
 * A block holds VL outputs x MB output channels in registers; bias and relu are applied before the store.
 * (Depthwise convs keep their own kernel in ckernels.c: with 9 multiply-adds per output, its two passes
 * over memory beat this one's four.) Pointwise convs (1x1, stride 1, no padding) whose
 * planes are whole blocks read the input in place. */
#include "ckernels.h"

#include <stdlib.h>
#include <string.h>

#define VL 16   /* outputs per block: one AVX-512 register of float32 */
#define MB 8    /* output channels per block, when a group has several */

typedef float vec __attribute__((vector_size(VL * 4)));   /* lowered to the widest registers of each clone */
typedef int ivec __attribute__((vector_size(VL * 4)));

/* What one group's blocks read and write. */
typedef struct {
    const float *src;   /* phase planes (or the input) of the group's channels */
    const idx *off;     /* k tap offsets into src */
    idx k;              /* taps: input channels per group x kh x kw */
    const float *w;     /* the group's weight rows, k each */
    const float *b;     /* the group's biases, or NULL */
    idx mg;             /* output channels of the group */
    idx wide;           /* outputs per channel on the wide grid (oh * wq) */
    float *out;         /* wide outputs: mg rows of `stride` floats */
    idx stride;
} job_t;

/* Outputs [q, q + cols) of channels m0 .. m0 + nvalid (MB computed: rows past the last repeat it), with the
 * bias and, for RELU (a constant in each caller, so the test folds), relu. cols <= VL. */
static inline __attribute__((always_inline)) void block(const job_t *j, idx q, idx cols, idx m0, idx nvalid,
                                                        const int RELU) {
    vec acc[MB];
    idx wrow[MB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; i++) {
        idx r = m0 + (i < nvalid ? i : nvalid - 1);
        wrow[i] = r * j->k;
        acc[i] = (vec){0} + (j->b ? j->b[r] : 0.f);
    }
    const float *src = j->src + q;
    for (idx t = 0; t < j->k; t++) {
        vec xv;
        memcpy(&xv, src + j->off[t], sizeof xv);   /* an unaligned vector load */
#pragma GCC unroll 8
        for (int i = 0; i < MB; i++) acc[i] += j->w[wrow[i] + t] * xv;
    }
    for (idx i = 0; i < nvalid; i++) {
        vec a = acc[i];
        if (RELU) {   /* lanes below 0 become 0; NaN and -0 pass, as in the other conv kernels */
            ivec neg = a < 0.f;
            a = (vec)((ivec)a & ~neg);
        }   /* clip runs as a pass over the stored rows (clip_rows): in registers it would not vectorise */
        float *yr = j->out + (m0 + i) * j->stride + q;
        if (cols == VL)
            memcpy(yr, &a, sizeof a);
        else
            memcpy(yr, &a, (size_t)cols * 4);
    }
}

static inline __attribute__((always_inline)) void group_blocks(const job_t *j, const int RELU) {
    for (idx q = 0; q < j->wide; q += VL) {
        idx cols = j->wide - q < VL ? j->wide - q : VL;
        for (idx m0 = 0; m0 < j->mg; m0 += MB)
            block(j, q, cols, m0, j->mg - m0 < MB ? j->mg - m0 : MB, RELU);
    }
}

CLONES static void run_group(const job_t *j, int relu) {
    if (relu) group_blocks(j, 1);
    else group_blocks(j, 0);
}

/* y = min(max(y, lo), hi) lane-wise, NaN passing: written so that it compiles to max/min instructions */
CLONES static void clip_rows(float *restrict y, idx n, float lo, float hi) {
    for (idx i = 0; i < n; i++) {
        float t = y[i];
        t = t < lo ? lo : t;
        y[i] = t > hi ? hi : t;
    }
}

int conv_direct(const geo_t *g, const float *x, const float *w, const float *b, float *y, int act, float lo,
                float hi) {
    idx groups = g->c / g->cg, mg = g->m / groups, k = g->cg * g->kh * g->kw;
    idx plane_in = g->h * g->w, plane_out = g->oh * g->ow;
    /* a 1x1 conv reads its group's planes as they are: in place where its blocks tile each plane, else from
     * one copy of them with VL floats after (the last block reads past the last plane's end); the phase
     * planes, copied plane by plane, cost more than the arithmetic on small planes (32 channels of 2x2:
     * 4-5 us, against 1.2 for 4x4 read in place) */
    int pointwise = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
                    g->oh == g->h && g->ow == g->w;
    int in_place = pointwise && plane_in % VL == 0;
    /* the wide grid: wq columns per output row, of which the first ow are outputs */
    idx phases = g->sh * g->sw, hq, wq;
    phase_dims(g, &hq, &wq);
    idx pplane = hq * wq;
    idx wide = pointwise ? plane_out : g->oh * wq;
    int crop = !pointwise && wq != g->ow;
    /* scratch: tap offsets; the group's (phase) planes and VL floats; wide rows; VL floats. The last block
     * reads up to VL - 1 + (wq - ow) floats past the planes (lanes that are dropped): inside the VL after
     * them and, whenever wq > ow, the wide rows that follow (at least wq floats). */
    size_t planes = in_place ? 0 : (size_t)(g->cg * (pointwise ? plane_in : phases * pplane) + VL);
    size_t rows = crop ? (size_t)(mg * wide) : 0;
    idx *off = malloc((size_t)k * sizeof(idx) + (planes + rows + VL) * sizeof(float));
    if (!off) return -1;
    float *xs = (float *)(off + k), *wbuf = xs + planes;
    for (idx c = 0, t = 0; c < g->cg; c++)
        for (idx ky = 0; ky < g->kh; ky++)
            for (idx kx = 0; kx < g->kw; kx++, t++)
                off[t] = pointwise ? c * plane_in
                                   : c * phases * pplane + phase_tap_offset(g, ky, kx, pplane, wq);
    for (idx ni = 0; ni < g->n; ni++)
        for (idx gi = 0; gi < groups; gi++) {
            const float *xg = x + (ni * g->c + gi * g->cg) * plane_in;
            float *yg = y + (ni * g->m + gi * mg) * plane_out;
            job_t j = {in_place ? xg : xs, off, k, w + gi * mg * k, b ? b + gi * mg : NULL, mg, wide,
                       crop ? wbuf : yg, crop ? wide : plane_out};
            if (pointwise && !in_place) {
                memcpy(xs, xg, (size_t)(g->cg * plane_in) * sizeof(float));
                memset(xs + g->cg * plane_in, 0, VL * sizeof(float));   /* read by dropped lanes only */
            } else if (!pointwise) {
                for (idx c = 0; c < g->cg; c++)
                    phase_planes(g, hq, wq, xg + c * plane_in, xs + c * phases * pplane, 0.f);
            }
            run_group(&j, act == 1);
            if (crop)
                for (idx i = 0; i < mg; i++)
                    for (idx oy = 0; oy < g->oh; oy++) {
                        const float *restrict s = wbuf + i * wide + oy * wq;
                        float *restrict d = yg + i * plane_out + oy * g->ow;
                        for (idx ox = 0; ox < g->ow; ox++) d[ox] = s[ox];
                    }
            if (act == 2) clip_rows(yg, mg * plane_out, lo, hi);
        }
    free(off);
    return 0;
}
