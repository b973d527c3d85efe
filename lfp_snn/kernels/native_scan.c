/* The LIF scans in plain C for the "native" backend (lfp_snn/kernels/native_scan.py compiles this file with
 * the system C compiler on first use and calls it through ctypes).
 *
 * Every [T, B, ...] tensor is a contiguous row-major [T, M] array (M = neurons in one step). A call handles
 * the columns [m0, m1) in blocks of LIF_BLOCK neurons; each block runs the whole time loop with its state in
 * small local arrays, so the loops over the block's neurons vectorise and each [T, M] array is read or
 * written once (a constant current [M] is re-read every step, from the cache).
 *
 * The arithmetic is the plain-torch reference's (lfp_snn/kernels/torch_scan.py), operation by operation and
 * in the same order, spikes as 0./1. values in the data's type, so that the results are bit-identical to it:
 * torch's addcmul(x, a, b, value=-1) is x + (-a)*b = x - a*b, exactly. Compile without FMA contraction
 * (-ffp-contract=off) and without -ffast-math.
 *
 * Forward, t = 1..T (H(x) = x > 0; reset_t = S_{t-1} with a delayed reset):
 *     c = β U_{t-1};  zero + delay: c = c - c S_{t-1};  V = I_t + c;  subtract + delay: V = V - S_{t-1} θ
 *     S_t = H(V - θ);  delay: U_t = V;  immediate: U_t = V - S_t θ (subtract)  or  V - V S_t (zero)
 * Feedback, t = T..1 (C_{T+1} = -0., which adds exactly like no carry at all):
 *     s = H(V_{t-1} - θ) (0 at t = 1 without delay);  P = V_{t-1};  immediate subtract: P = P - s θ;
 *     zero: P = P - P s;  d = V_t - P;  subtract + delay: d = d + s θ;  d = |d| + |P|;  d = d + ε
 *     g_t = (C_{t+1} + reward_t) / d;  C_t = (P β) g_t
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef LIF_BLOCK
#define LIF_BLOCK 512
#endif
#define LIF_INLINE static inline __attribute__((always_inline))

int lif_native_block(void) { return LIF_BLOCK; }

/* BODY with SUB_ and DELAY_ literal constants for the reset (subtract, delay) of the call */
#define LIF_VARIANTS(BODY)                                                                                 \
    do {                                                                                                   \
        if (subtract && delay) {                                                                           \
            enum { SUB_ = 1, DELAY_ = 1 };                                                                 \
            BODY;                                                                                          \
        } else if (subtract) {                                                                             \
            enum { SUB_ = 1, DELAY_ = 0 };                                                                 \
            BODY;                                                                                          \
        } else if (delay) {                                                                                \
            enum { SUB_ = 0, DELAY_ = 1 };                                                                 \
            BODY;                                                                                          \
        } else {                                                                                           \
            enum { SUB_ = 0, DELAY_ = 0 };                                                                 \
            BODY;                                                                                          \
        }                                                                                                  \
    } while (0)

#define LIF_DEFINE(REAL, SUF, FABS)                                                                        \
    /* one block of n <= LIF_BLOCK neurons starting at column j0; SUB and DELAY are literal constants */   \
    LIF_INLINE void lif_fwd_block_##SUF(const REAL *cur, int64_t cur_stride, const REAL *beta,             \
                                        int32_t beta_vec, const REAL *thr, int32_t thr_vec,                \
                                        const REAL *mem0, REAL *pot, int64_t pstride, int64_t pj0,         \
                                        uint8_t *spk8, REAL *spkf, int64_t T, int64_t M, int64_t j0,       \
                                        int64_t n, const int SUB, const int DELAY)                         \
    {                                                                                                      \
        REAL b[LIF_BLOCK], th[LIF_BLOCK], u[LIF_BLOCK], ps[LIF_BLOCK], x[LIF_BLOCK], s[LIF_BLOCK];         \
        for (int64_t k = 0; k < n; ++k) {                                                                  \
            b[k] = beta_vec ? beta[j0 + k] : beta[0];                                                      \
            th[k] = thr_vec ? thr[j0 + k] : thr[0];                                                        \
            u[k] = mem0 ? mem0[j0 + k] : (REAL)0;                                                          \
            ps[k] = u[k] > th[k] ? (REAL)1 : (REAL)0; /* reset_1 = H(U_0 - θ) (delayed reset) */           \
        }                                                                                                  \
        for (int64_t t = 0; t < T; ++t) {                                                                  \
            const REAL *c = cur + t * cur_stride + j0;                                                     \
            for (int64_t k = 0; k < n; ++k) /* read the whole step before writing: out may be cur */       \
                x[k] = c[k];                                                                               \
            for (int64_t k = 0; k < n; ++k) {                                                              \
                REAL carried = u[k] * b[k];                                                                \
                if (DELAY && !SUB)                                                                         \
                    carried = carried - carried * ps[k];                                                   \
                REAL v = x[k] + carried;                                                                   \
                if (DELAY && SUB)                                                                          \
                    v = v - ps[k] * th[k];                                                                 \
                REAL sk = v > th[k] ? (REAL)1 : (REAL)0;                                                   \
                x[k] = v;                                                                                  \
                s[k] = sk;                                                                                 \
                if (DELAY) {                                                                               \
                    u[k] = v;                                                                              \
                    ps[k] = sk;                                                                            \
                } else if (SUB) {                                                                          \
                    u[k] = v - sk * th[k];                                                                 \
                } else {                                                                                   \
                    u[k] = v - v * sk;                                                                     \
                }                                                                                          \
            }                                                                                              \
            if (pot) { /* V of step t at pot + t * pstride + pj0 (NULL: not written) */                    \
                REAL *po = pot + t * pstride + pj0;                                                        \
                for (int64_t k = 0; k < n; ++k)                                                            \
                    po[k] = x[k];                                                                          \
            }                                                                                              \
            if (spkf) {                                                                                    \
                REAL *so = spkf + t * M + j0;                                                              \
                for (int64_t k = 0; k < n; ++k)                                                            \
                    so[k] = s[k];                                                                          \
            } else if (spk8) {                                                                             \
                uint8_t *so = spk8 + t * M + j0;                                                           \
                for (int64_t k = 0; k < n; ++k)                                                            \
                    so[k] = (uint8_t)(s[k] != (REAL)0);                                                    \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
                                                                                                           \
    /* cur: [T, M] (cur_stride = M) or [M] (cur_stride = 0, a constant current); beta/thr: [M] when *_vec, \
     * else [1]; mem0: [M] or NULL; pot: [T, M] (may be cur); spikes into spk8 (0/1 bytes) or spkf. */     \
    void lif_forward_##SUF(const REAL *cur, int64_t cur_stride, const REAL *beta, int32_t beta_vec,        \
                           const REAL *thr, int32_t thr_vec, const REAL *mem0, REAL *pot, uint8_t *spk8,   \
                           REAL *spkf, int64_t T, int64_t M, int64_t m0, int64_t m1, int32_t subtract,     \
                           int32_t delay)                                                                  \
    {                                                                                                      \
        for (int64_t j0 = m0; j0 < m1; j0 += LIF_BLOCK) {                                                  \
            int64_t n = m1 - j0 < LIF_BLOCK ? m1 - j0 : LIF_BLOCK;                                         \
            LIF_VARIANTS(lif_fwd_block_##SUF(cur, cur_stride, beta, beta_vec, thr, thr_vec, mem0, pot, M,  \
                                             j0, spk8, spkf, T, M, j0, n, SUB_, DELAY_));                  \
        }                                                                                                  \
    }                                                                                                      \
                                                                                                           \
    /* V of step t read at pot + t * pstride + pj0 */                                                      \
    LIF_INLINE void lif_fb_block_##SUF(const REAL *rew, const REAL *pot, int64_t pstride, int64_t pj0,     \
                                       const REAL *beta, int32_t beta_vec, const REAL *thr,                \
                                       int32_t thr_vec, const REAL *mem0, REAL eps, REAL *g, int64_t T,    \
                                       int64_t M, int64_t j0, int64_t n, const int SUB, const int DELAY,   \
                                       const int SUM)                                                      \
    {                                                                                                      \
        REAL b[LIF_BLOCK], th[LIF_BLOCK], v[LIF_BLOCK], vp[LIF_BLOCK], carry[LIF_BLOCK], r[LIF_BLOCK];     \
        REAL acc[LIF_BLOCK]; /* SUM: the sum of g over the steps so far (t = T..1), -0. + x == x */        \
        for (int64_t k = 0; k < n; ++k) {                                                                  \
            b[k] = beta_vec ? beta[j0 + k] : beta[0];                                                      \
            th[k] = thr_vec ? thr[j0 + k] : thr[0];                                                        \
            v[k] = pot[(T - 1) * pstride + pj0 + k]; /* V_T */                                         \
            carry[k] = (REAL)-0.0;            /* C_{T+1}: -0. + x == x, bit for bit */                     \
            acc[k] = (REAL)-0.0;                                                                           \
        }                                                                                                  \
        for (int64_t t = T - 1; t >= 0; --t) {                                                             \
            if (t > 0) {                                                                                   \
                const REAL *pp = pot + (t - 1) * pstride + pj0;                                            \
                for (int64_t k = 0; k < n; ++k)                                                            \
                    vp[k] = pp[k];                                                                         \
            } else {                                                                                       \
                for (int64_t k = 0; k < n; ++k)                                                            \
                    vp[k] = mem0 ? mem0[j0 + k] : (REAL)0;                                                 \
            }                                                                                              \
            const REAL fired_ok = (DELAY || t > 0) ? (REAL)1 : (REAL)0; /* S_0 = 0 without delay */       \
            const REAL *rp = rew + t * M + j0;                                                             \
            for (int64_t k = 0; k < n; ++k) /* read the whole step before writing: g may be rew */         \
                r[k] = rp[k];                                                                              \
            for (int64_t k = 0; k < n; ++k) {                                                              \
                REAL s = vp[k] > th[k] ? fired_ok : (REAL)0;                                               \
                REAL p = vp[k];                                                                            \
                if (SUB && !DELAY)                                                                         \
                    p = p - s * th[k];                                                                     \
                else if (!SUB)                                                                             \
                    p = p - p * s;                                                                         \
                REAL d = v[k] - p;                                                                         \
                if (SUB && DELAY)                                                                          \
                    d = d + s * th[k];                                                                     \
                d = FABS(d) + FABS(p);                                                                     \
                d = d + eps;                                                                               \
                REAL pb = p * b[k];                                                                        \
                REAL gk = (carry[k] + r[k]) / d;                                                           \
                r[k] = gk;                                                                                 \
                carry[k] = pb * gk;                                                                        \
                v[k] = vp[k];                                                                              \
            }                                                                                              \
            if (SUM) {                                                                                     \
                for (int64_t k = 0; k < n; ++k)                                                            \
                    acc[k] += r[k];                                                                        \
            } else {                                                                                       \
                REAL *go = g + t * M + j0;                                                                 \
                for (int64_t k = 0; k < n; ++k)                                                            \
                    go[k] = r[k];                                                                          \
            }                                                                                              \
        }                                                                                                  \
        if (SUM)                                                                                           \
            for (int64_t k = 0; k < n; ++k)                                                                \
                g[j0 + k] = acc[k];                                                                        \
    }                                                                                                      \
                                                                                                           \
    /* rew, pot: [T, M]; g: [T, M] (may be rew), or [M] for the sum of g over time when summed;            \
     * beta/thr: [M] when *_vec, else [1]; mem0: [M] or NULL */                                            \
    void lif_feedback_##SUF(const REAL *rew, const REAL *pot, const REAL *beta, int32_t beta_vec,          \
                            const REAL *thr, int32_t thr_vec, const REAL *mem0, REAL eps, REAL *g,         \
                            int64_t T, int64_t M, int64_t m0, int64_t m1, int32_t subtract, int32_t delay, \
                            int32_t summed)                                                                \
    {                                                                                                      \
        if (T <= 0)                                                                                        \
            return;                                                                                        \
        for (int64_t j0 = m0; j0 < m1; j0 += LIF_BLOCK) {                                                  \
            int64_t n = m1 - j0 < LIF_BLOCK ? m1 - j0 : LIF_BLOCK;                                         \
            LIF_VARIANTS(lif_fb_block_##SUF(rew, pot, M, j0, beta, beta_vec, thr, thr_vec, mem0, eps, g, T,\
                                            M, j0, n, SUB_, DELAY_, summed));                              \
        }                                                                                                  \
    }                                                                                                      \
                                                                                                           \
    /* The feedback of a LIF layer whose current is the same at every step (cur: [M]), without its [T, M]  \
     * firing potential: each block of neurons runs the forward scan again into a [T, n] buffer (spikes    \
     * not written), then the reverse scan reads it there. The same operations as lif_forward followed by  \
     * lif_feedback, so the same bits. Returns 0, or 1 when the buffer cannot be allocated. */             \
    int32_t lif_feedback_constant_##SUF(const REAL *rew, const REAL *cur, const REAL *beta,                \
                                        int32_t beta_vec, const REAL *thr, int32_t thr_vec,                \
                                        const REAL *mem0, REAL eps, REAL *g, int64_t T, int64_t M,         \
                                        int64_t m0, int64_t m1, int32_t subtract, int32_t delay,           \
                                        int32_t summed)                                                    \
    {                                                                                                      \
        if (T <= 0 || m1 <= m0)                                                                            \
            return 0;                                                                                      \
        REAL *buf = (REAL *)malloc((size_t)T * LIF_BLOCK * sizeof(REAL));                                  \
        if (!buf)                                                                                          \
            return 1;                                                                                      \
        for (int64_t j0 = m0; j0 < m1; j0 += LIF_BLOCK) {                                                  \
            int64_t n = m1 - j0 < LIF_BLOCK ? m1 - j0 : LIF_BLOCK;                                         \
            LIF_VARIANTS(lif_fwd_block_##SUF(cur, 0, beta, beta_vec, thr, thr_vec, mem0, buf, n, 0, NULL,  \
                                             NULL, T, M, j0, n, SUB_, DELAY_);                             \
                         lif_fb_block_##SUF(rew, buf, n, 0, beta, beta_vec, thr, thr_vec, mem0, eps, g, T, \
                                            M, j0, n, SUB_, DELAY_, summed));                              \
        }                                                                                                  \
        free(buf);                                                                                         \
        return 0;                                                                                          \
    }

LIF_DEFINE(float, f32, fabsf)
LIF_DEFINE(double, f64, fabs)

/* Max pooling of 0/1 spikes (uint8) over non-overlapping k x k windows, for planes [p0, p1) of [P, H, W]
 * (H and W multiples of k). Forward: the OR of each window. Backward: the reward of each window goes to its
 * first spike in row-major order, or to its first position when it has none (torch's arg-max on 0/1
 * values); every other position gets 0. */
void spike_pool_forward(const uint8_t *x, uint8_t *y, int64_t H, int64_t W, int64_t k, int64_t p0, int64_t p1)
{
    const int64_t Ho = H / k, Wo = W / k;
    for (int64_t p = p0; p < p1; ++p) {
        const uint8_t *xp = x + p * H * W;
        uint8_t *yp = y + p * Ho * Wo;
        for (int64_t oh = 0; oh < Ho; ++oh) {
            uint8_t *yr = yp + oh * Wo;
            for (int64_t ow = 0; ow < Wo; ++ow)
                yr[ow] = 0;
            for (int64_t i = 0; i < k; ++i) {
                const uint8_t *row = xp + (oh * k + i) * W;
                for (int64_t ow = 0; ow < Wo; ++ow) {
                    uint8_t v = 0;
                    for (int64_t j = 0; j < k; ++j)
                        v |= row[ow * k + j];
                    yr[ow] |= v;
                }
            }
        }
    }
}

#define SPIKE_POOL_BACKWARD(REAL, SUF)                                                                     \
    void spike_pool_backward_##SUF(const REAL *r, const uint8_t *x, REAL *out, int64_t H, int64_t W,       \
                                   int64_t k, int64_t p0, int64_t p1)                                      \
    {                                                                                                      \
        const int64_t Ho = H / k, Wo = W / k;                                                              \
        for (int64_t p = p0; p < p1; ++p) {                                                                \
            const uint8_t *xp = x + p * H * W;                                                             \
            const REAL *rp = r + p * Ho * Wo;                                                              \
            REAL *op = out + p * H * W;                                                                    \
            for (int64_t q = 0; q < H * W; ++q)                                                            \
                op[q] = (REAL)0;                                                                           \
            for (int64_t oh = 0; oh < Ho; ++oh) {                                                          \
                for (int64_t ow = 0; ow < Wo; ++ow) {                                                      \
                    int64_t first = (oh * k) * W + ow * k;                                                 \
                    int found = 0;                                                                         \
                    for (int64_t i = 0; i < k && !found; ++i) {                                            \
                        const int64_t row = (oh * k + i) * W + ow * k;                                     \
                        for (int64_t j = 0; j < k; ++j) {                                                  \
                            if (xp[row + j]) {                                                             \
                                first = row + j;                                                           \
                                found = 1;                                                                 \
                                break;                                                                     \
                            }                                                                              \
                        }                                                                                  \
                    }                                                                                      \
                    op[first] = rp[oh * Wo + ow];                                                          \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }

SPIKE_POOL_BACKWARD(float, f32)
SPIKE_POOL_BACKWARD(double, f64)

/* The same two on channels-last spikes, memory ordered [N, H, W, C] (C innermost, as a CPU convolution's
 * output is kept), for images [n0, n1): the window's positions are visited in the same row-major order, the
 * channels side by side. The pointers are restrict-qualified (a uint8 pointer may otherwise alias anything,
 * which keeps the compiler from vectorising the loops over the channels).
 *
 * 2 x 2 windows (the common case) have their own loops, inlined with the channel count C a compile-time
 * constant for the small counts of SNN feature maps (POOL_SMALL_C): a loop over fewer than 16 or 32
 * channels of runtime length is left scalar by the vectoriser (LeNet's 12 channels ran 2-5x slower than its
 * 64). Every other C takes the same loops with C at run time. */
#define POOL_SMALL_C(CALL, C)                                                                              \
    switch (C) {                                                                                           \
    case 2: CALL(2); break;                                                                                \
    case 4: CALL(4); break;                                                                                \
    case 6: CALL(6); break;                                                                                \
    case 8: CALL(8); break;                                                                                \
    case 12: CALL(12); break;                                                                              \
    case 16: CALL(16); break;                                                                              \
    case 20: CALL(20); break;                                                                              \
    case 24: CALL(24); break;                                                                              \
    case 30: CALL(30); break;                                                                              \
    default: CALL(C); break;                                                                               \
    }

LIF_INLINE void pool2_forward_cl(const uint8_t *restrict x, uint8_t *restrict y, int64_t H, int64_t W,
                                 const int64_t C, int64_t n0, int64_t n1)
{
    const int64_t Ho = H / 2, Wo = W / 2, WC = W * C;
    for (int64_t n = n0; n < n1; ++n)
        for (int64_t oh = 0; oh < Ho; ++oh) {
            const uint8_t *restrict a = x + (n * H + 2 * oh) * WC, *restrict b = a + WC;
            uint8_t *restrict yr = y + (n * Ho + oh) * Wo * C;
            for (int64_t ow = 0; ow < Wo; ++ow) {
                const uint8_t *restrict a0 = a + ow * 2 * C, *restrict b0 = b + ow * 2 * C;
                uint8_t *restrict yo = yr + ow * C;
                for (int64_t c = 0; c < C; ++c)
                    yo[c] = (uint8_t)(((a0[c] | a0[C + c]) | b0[c]) | b0[C + c]);
            }
        }
}

void spike_pool_forward_cl(const uint8_t *restrict x, uint8_t *restrict y, int64_t H, int64_t W, int64_t C,
                           int64_t k, int64_t n0, int64_t n1)
{
    if (k == 2) {
#define POOL2_FWD(CC) pool2_forward_cl(x, y, H, W, CC, n0, n1)
        POOL_SMALL_C(POOL2_FWD, C)
#undef POOL2_FWD
        return;
    }
    const int64_t Ho = H / k, Wo = W / k, WC = W * C;
    for (int64_t n = n0; n < n1; ++n) {
        for (int64_t oh = 0; oh < Ho; ++oh) {
            uint8_t *restrict yr = y + (n * Ho + oh) * Wo * C;
            for (int64_t i = 0; i < k; ++i) {
                const uint8_t *restrict xr = x + (n * H + oh * k + i) * WC;
                for (int64_t ow = 0; ow < Wo; ++ow) {
                    uint8_t *restrict yo = yr + ow * C;
                    const uint8_t *restrict xo = xr + ow * k * C;
                    if (i == 0)
                        for (int64_t c = 0; c < C; ++c)
                            yo[c] = xo[c];
                    else
                        for (int64_t c = 0; c < C; ++c)
                            yo[c] |= xo[c];
                    for (int64_t j = 1; j < k; ++j)
                        for (int64_t c = 0; c < C; ++c)
                            yo[c] |= xo[j * C + c];
                }
            }
        }
    }
}

#define SPIKE_POOL_BACKWARD_CL(REAL, SUF)                                                                  \
    /* every position is written once, without branches (random spikes would mispredict them): a position  \
     * takes the reward where it holds the window's first spike (r * 0 elsewhere, as the torch path's      \
     * product); the first position takes it where the window has none. A 2 x 2 window takes its four      \
     * spikes at once; larger ones carry seen[c]: a spike came earlier in the window. Rows and columns     \
     * past the last whole window (floor mode) get 0. */                                                   \
    /* the rows and columns of one channels-last image [H, W, C] past its last whole k x k window (floor   \
     * mode) get 0; every other position is written by the window loops */                                \
    LIF_INLINE void zero_uncovered_##SUF(REAL *restrict on, int64_t H, int64_t W, int64_t C, int64_t k)    \
    {                                                                                                      \
        const int64_t WC = W * C, covered_rows = H / k * k, covered = W / k * k * C;                       \
        for (int64_t h = 0; h < H; ++h)                                                                    \
            for (int64_t q = (h < covered_rows ? covered : 0); q < WC; ++q)                                \
                on[h * WC + q] = (REAL)0;                                                                  \
    }                                                                                                      \
                                                                                                           \
    LIF_INLINE void pool2_backward_cl_##SUF(const REAL *restrict r, const uint8_t *restrict x,             \
                                            REAL *restrict out, int64_t H, int64_t W, const int64_t C,     \
                                            int64_t n0, int64_t n1)                                        \
    {                                                                                                      \
        const int64_t Ho = H / 2, Wo = W / 2, WC = W * C;                                                  \
        for (int64_t n = n0; n < n1; ++n) {                                                                \
            REAL *restrict on = out + n * H * WC;                                                          \
            zero_uncovered_##SUF(on, H, W, C, 2);                                                          \
            for (int64_t oh = 0; oh < Ho; ++oh) {                                                          \
                const uint8_t *restrict a = x + (n * H + 2 * oh) * WC, *restrict b = a + WC;               \
                REAL *restrict pa = on + 2 * oh * WC, *restrict pb = pa + WC;                              \
                const REAL *restrict rr = r + (n * Ho + oh) * Wo * C;                                      \
                for (int64_t ow = 0; ow < Wo; ++ow) {                                                      \
                    const int64_t q0 = ow * 2 * C;                                                         \
                    const uint8_t *restrict a0 = a + q0, *restrict b0 = b + q0;                            \
                    REAL *restrict o0 = pa + q0, *restrict o1 = pb + q0;                                   \
                    const REAL *restrict ro = rr + ow * C;                                                 \
                    for (int64_t c = 0; c < C; ++c) {                                                      \
                        const uint8_t s0 = a0[c], s1 = a0[C + c], s2 = b0[c], s3 = b0[C + c];              \
                        o0[c] = ro[c] * (REAL)(s0 | ((s1 | s2 | s3) ^ 1));                                 \
                        o0[C + c] = ro[c] * (REAL)(s1 & (s0 ^ 1));                                         \
                        o1[c] = ro[c] * (REAL)(s2 & ((s0 | s1) ^ 1));                                      \
                        o1[C + c] = ro[c] * (REAL)(s3 & ((s0 | s1 | s2) ^ 1));                             \
                    }                                                                                      \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }                                                                                                      \
                                                                                                           \
    void spike_pool_backward_cl_##SUF(const REAL *restrict r, const uint8_t *restrict x,                   \
                                      REAL *restrict out, int64_t H, int64_t W, int64_t C, int64_t k,      \
                                      int64_t n0, int64_t n1)                                              \
    {                                                                                                      \
        if (k == 2) {                                                                                      \
            POOL_SMALL_C(POOL2_BWD_##SUF, C)                                                               \
            return;                                                                                        \
        }                                                                                                  \
        const int64_t Ho = H / k, Wo = W / k, WC = W * C;                                                  \
        uint8_t seen[C > 0 ? C : 1];                                                                       \
        for (int64_t n = n0; n < n1; ++n) {                                                                \
            REAL *restrict on = out + n * H * WC;                                                          \
            const uint8_t *restrict xn = x + n * H * WC;                                                   \
            zero_uncovered_##SUF(on, H, W, C, k);                                                          \
            for (int64_t oh = 0; oh < Ho; ++oh) {                                                          \
                for (int64_t ow = 0; ow < Wo; ++ow) {                                                      \
                    const REAL *restrict ro = r + ((n * Ho + oh) * Wo + ow) * C;                           \
                    const int64_t q0 = (oh * k * W + ow * k) * C; /* the window's first position */        \
                    for (int64_t c = 0; c < C; ++c)                                                        \
                        seen[c] = 0;                                                                       \
                    for (int64_t i = 0; i < k; ++i) {                                                      \
                        for (int64_t j = 0; j < k; ++j) {                                                  \
                            const int64_t q = q0 + (i * W + j) * C;                                        \
                            const uint8_t *restrict xq = xn + q;                                           \
                            REAL *restrict oq = on + q;                                                    \
                            for (int64_t c = 0; c < C; ++c) {                                              \
                                const uint8_t xv = xq[c];                                                  \
                                oq[c] = ro[c] * (REAL)(xv & (uint8_t)(seen[c] ^ 1));                       \
                                seen[c] |= xv;                                                             \
                            }                                                                              \
                        }                                                                                  \
                    }                                                                                      \
                    REAL *restrict o0 = on + q0;                                                           \
                    for (int64_t c = 0; c < C; ++c)                                                        \
                        o0[c] += ro[c] * (REAL)(seen[c] ^ 1);                                              \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
    }

#define POOL2_BWD_f32(CC) pool2_backward_cl_f32(r, x, out, H, W, CC, n0, n1)
#define POOL2_BWD_f64(CC) pool2_backward_cl_f64(r, x, out, H, W, CC, n0, n1)
SPIKE_POOL_BACKWARD_CL(float, f32)
SPIKE_POOL_BACKWARD_CL(double, f64)

/* Spikes per neuron: out[m] = sum over rows r of x[r * M + m] for the columns [m0, m1) of a uint8 [R, M]
 * array (what torch's sum over the time and batch axes gives, without its int64 copy of the spikes). Blocks
 * of 1024 columns accumulate in int32 (exact below 2^31 / 255 rows per pass) held in L1. */
void spike_count(const uint8_t *x, int64_t *out, int64_t R, int64_t M, int64_t m0, int64_t m1)
{
    enum { COLS = 1024, ROWS = 1 << 22 };
    int32_t acc[COLS];
    for (int64_t j0 = m0; j0 < m1; j0 += COLS) {
        const int64_t n = m1 - j0 < COLS ? m1 - j0 : COLS;
        for (int64_t k = 0; k < n; ++k)
            out[j0 + k] = 0;
        for (int64_t r0 = 0; r0 < R; r0 += ROWS) {
            const int64_t r1 = R - r0 < ROWS ? R : r0 + ROWS;
            for (int64_t k = 0; k < n; ++k)
                acc[k] = 0;
            for (int64_t r = r0; r < r1; ++r) {
                const uint8_t *xr = x + r * M + j0;
                for (int64_t k = 0; k < n; ++k)
                    acc[k] += xr[k];
            }
            for (int64_t k = 0; k < n; ++k)
                out[j0 + k] += acc[k];
        }
    }
}
