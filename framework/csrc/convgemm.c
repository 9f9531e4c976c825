/* Group-1 2-D convs with several taps (3x3, 5x5, 7x7; any stride and dilation) as one GEMM over an implicit
 * im2col: y = W [M, C*KH*KW] @ cols, where row (c, tap) of cols is a plane of channel c's zero-padded input
 * shifted by the tap's offset. With strides the input is split into its stride phases first (phase_planes:
 * phase (py, px) holds the padded input's rows py, py + sh, ... and columns px, px + sw, ...), and tap (ky,
 * kx) reads phase (ky*dh % sh, kx*dw % sw) shifted by (ky*dh / sh, kx*dw / sw) (phase_tap_offset); at stride
 * 1 the one phase is the padded plane. Outputs are computed on the "wide" grid [oh][wq] (wq: a phase's
 * width), on which output q reads element q + offset of the tap's phase, so the GEMM packs each panel of
 * cols straight from the phases (gemm.c's pack_panel_taps) instead of reading an im2col matrix that the conv
 * first wrote out: for 128->32 channels 3x3 over 56x56 that matrix is 14 MiB, and writing it took a third of
 * the conv's time. The wq - ow extra columns of each output row are computed and dropped as the rows are cut
 * out, and ckernels.c's bias_act applies bias and activation. */
#include "ckernels.h"
#include "gemm.h"

#include <stdlib.h>
#include <string.h>

/* y[m][oy][0:ow] = wide[m][oy * wq + 0:ow] for one image: the output rows cut from the wide grid */
static void cut_rows(const float *wide, idx wq, idx m, idx oh, idx ow, float *y) {
    for (idx r = 0; r < m * oh; r++) memcpy(y + r * ow, wide + r * wq, (size_t)ow * sizeof(float));
}

int conv_gemm(const geo_t *g, const float *x, const float *w, const float *b, float *y, int act, float lo,
              float hi, int nthreads) {
    idx taps = g->kh * g->kw, hq, wq;
    phase_dims(g, &hq, &wq);
    idx plane = hq * wq, phases = g->sh * g->sw, wide_n = (g->oh - 1) * wq + g->ow;
    float *pad = malloc((size_t)(g->c * phases * plane) * sizeof(float));
    float *wide = malloc((size_t)(g->m * g->oh * wq) * sizeof(float));
    int64_t *off = malloc((size_t)taps * sizeof(int64_t));
    int rc = -1;
    if (!pad || !wide || !off) goto out;
    for (idx ky = 0; ky < g->kh; ky++)
        for (idx kx = 0; kx < g->kw; kx++) off[ky * g->kw + kx] = phase_tap_offset(g, ky, kx, plane, wq);
    /* a tap's wide_n columns from its offset end at most at row oh - 1 + (kh-1)*dh/sh, column ow - 1 +
     * (kw-1)*dw/sw of its phase: its last element */
    gemm_args_t args = {.batch = 1, .m = g->m, .n = wide_n, .k = g->c * taps, .batch_in = 1, .a = w, .b = pad,
                        .c = wide, .lda = g->c * taps, .ldb = phases * plane, .ldc = g->oh * wq, .taps = taps,
                        .tap_off = off};
    for (idx i = 0; i < g->n; i++) {
        for (idx ch = 0; ch < g->c; ch++)
            phase_planes(g, hq, wq, x + (i * g->c + ch) * g->h * g->w, pad + ch * phases * plane, 0.f);
        if (gemm_f32(&args, nthreads, GEMM_ISA_AUTO) != 0) goto out;
        float *yi = y + i * g->m * g->oh * g->ow;
        cut_rows(wide, wq, g->m, g->oh, g->ow, yi);
        if (b || act) bias_act(yi, b, NULL, 1, g->m, g->oh * g->ow, act, lo, hi);
    }
    rc = 0;
out:
    free(off);
    free(wide);
    free(pad);
    return rc;
}
