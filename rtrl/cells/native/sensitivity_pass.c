/* The engine's pass over the input sensitivity S^{W_x} (B,R,D), R = K·N rows, fused into one sweep
 * (docs/DESIGN.md §8; the PyTorch form of the same pass is rtrl/cells/sensitivity_pass.py):
 *
 *   grad[r,:] += Σ_b e0[b,n(r)] · S[b,r,:]                              (the history gradient, e0 != NULL)
 *   out[b,r,:] = P0[b,n] · S[b,r,:] (+ Q0[b,n] · S[b,partner(r),:])       (S_T, out != NULL; out may be S)
 *              + Σ_{t<T} lhs[b,r,t] · x[b,t,:]
 *   z_f,b[r,:] = decay · z_f,b[r,:] + c[f,b,n] · S[b,r,:]                  (folds, F > 0: a streaming learner's
 *                                                                        eligibility traces, one tensor per b)
 *   z_f,b[k·M+n,:] = decay · z + c[f,b,n] · S[b,r,:] + c[f,b,n+M] · S[b,r+M,:]   (half-size folds of a paired cell:
 *                                                                        parameter row n feeds state rows n, n + M)
 *
 * n(r) = r mod N is the row's unit; a paired cell (Q0 != NULL) has N = 2M state rows per gate and the
 * partner of unit n is n ± M (its 2×2 carry mixes the two). Each row of S is read once and written once;
 * no temporary but one row pair. Rows are split between threads (each owns its rows of grad, so the sum over
 * b needs no lock). Plain C99 and POSIX threads: built at install or first use by the system's C compiler,
 * and the PyTorch path is used where it cannot be built. */
#include <pthread.h>
#include <stdint.h>
#include <stddef.h>

#define MAX_THREADS 64

/* x86-64: an AVX2 copy of the pass besides the baseline one, chosen when the library is loaded (GCC's
 * function multi-versioning); elsewhere, or with another compiler, the baseline alone */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

#define DEFINE_PASS(SUFFIX, REAL)                                                                            \
typedef struct {                                                                                             \
    int64_t B, R, D, N, T, r0, r1;                                                                           \
    const REAL *S; REAL *out; const REAL *e0; REAL *grad; const REAL *P0; const REAL *Q0;                    \
    const REAL *lhs; const REAL *x;                                                                          \
    int64_t F; const REAL *fcoef; REAL *const *fout; REAL decay; int64_t fhalf;                              \
} job_##SUFFIX;                                                                                              \
                                                                                                             \
static inline __attribute__((always_inline))                                                                  \
void row_##SUFFIX(const job_##SUFFIX *j, int64_t b, int64_t r, const REAL *s, REAL *o, REAL p,               \
                  const REAL *partner, REAL q) {                                                             \
    const int64_t D = j->D, T = j->T;                                                                        \
    for (int64_t f = 0; f < (j->fhalf ? 0 : j->F); f++) {   /* the traces read the row before it is written */ \
        REAL *z = j->fout[f * j->B + b] + r * D;                                                             \
        const REAL c = j->fcoef[(f * j->B + b) * j->N + r % j->N], decay = j->decay;                         \
        for (int64_t d = 0; d < D; d++) z[d] = decay * z[d] + c * s[d];                                      \
    }                                                                                                        \
    if (j->grad && o == s && !partner && T == 1) {   /* a streaming step: every term in one loop over the row */ \
        const REAL e = j->e0[b * j->N + r % j->N], l0 = j->lhs[b * j->R + r];                                \
        const REAL *xb = j->x + b * D;                                                                       \
        REAL *g = j->grad + r * D;                                                                           \
        for (int64_t d = 0; d < D; d++) { const REAL v = o[d]; g[d] += e * v; o[d] = p * v + l0 * xb[d]; }   \
        return;                                                                                              \
    }                                                                                                        \
    if (j->grad) {                                                                                           \
        const REAL e = j->e0[b * j->N + r % j->N];                                                           \
        REAL *g = j->grad + r * D;                                                                           \
        for (int64_t d = 0; d < D; d++) g[d] += e * s[d];                                                    \
    }                                                                                                        \
    if (!o) return;                                                                                          \
    const REAL *l = j->lhs + (b * j->R + r) * T;                                                             \
    const REAL *xb = j->x + b * T * D;                                                                       \
    /* in place (o == s) the loops name one pointer: the compiler vectorises them (two pointers to the same   \
       row would fail its overlap check and run the scalar loop) */                                          \
    if (o == s) {                                                                                            \
        if (partner) for (int64_t d = 0; d < D; d++) o[d] = p * o[d] + q * partner[d];                       \
        else for (int64_t d = 0; d < D; d++) o[d] *= p;                                                      \
    } else {                                                                                                 \
        if (partner) for (int64_t d = 0; d < D; d++) o[d] = p * s[d] + q * partner[d];                       \
        else for (int64_t d = 0; d < D; d++) o[d] = p * s[d];                                                \
    }                                                                                                        \
    for (int64_t t = 0; t < T; t++) {                                                                        \
        const REAL lt = l[t];                                                                                \
        const REAL *xt = xb + t * D;                                                                         \
        for (int64_t d = 0; d < D; d++) o[d] += lt * xt[d];                                                  \
    }                                                                                                        \
}                                                                                                            \
                                                                                                             \
CLONES static void *work_##SUFFIX(void *arg) {                                                               \
    /* items i0..i1: rows r, or for a paired cell the pairs (r, r + M) of unit n < M of gate k */            \
    const job_##SUFFIX *j = (const job_##SUFFIX *)arg;                                                       \
    const int64_t D = j->D, N = j->N, M = N / 2;                                                             \
    const int paired = j->Q0 && j->out;                                                                      \
    REAL keep[2][4096];                                  /* a row pair read before it is written over */    \
    for (int64_t b = 0; b < j->B; b++) {                                                                     \
        const REAL *Sb = j->S + b * j->R * D;                                                                \
        REAL *ob = j->out ? j->out + b * j->R * D : NULL;                                                    \
        for (int64_t i = j->r0; i < j->r1; i++) {                                                            \
            if (!paired) {                                                                                   \
                const REAL p = j->P0 ? j->P0[b * N + i % N] : 0;                                             \
                row_##SUFFIX(j, b, i, Sb + i * D, ob ? ob + i * D : NULL, p, NULL, 0);                       \
                continue;                                                                                    \
            }                                                                                                \
            const int64_t n = i % M, r = (i / M) * N + n, r2 = r + M;                                        \
            const REAL *s1 = Sb + r * D, *s2 = Sb + r2 * D, *c1 = s1, *c2 = s2;                              \
            if (ob == Sb) {                                                                                  \
                for (int64_t d = 0; d < D; d++) { keep[0][d] = s1[d]; keep[1][d] = s2[d]; }                  \
                c1 = keep[0]; c2 = keep[1];                                                                  \
            }                                                                                                \
            for (int64_t f = 0; f < (j->fhalf ? j->F : 0); f++) {   /* one trace row from the pair */         \
                REAL *z = j->fout[f * j->B + b] + ((r / N) * M + n) * D;                                     \
                const REAL *cf = j->fcoef + (f * j->B + b) * N, a1 = cf[n], a2 = cf[n + M], decay = j->decay; \
                for (int64_t d = 0; d < D; d++) z[d] = decay * z[d] + a1 * c1[d] + a2 * c2[d];               \
            }                                                                                                \
            row_##SUFFIX(j, b, r, c1, ob + r * D, j->P0[b * N + n], c2, j->Q0[b * N + n]);                   \
            row_##SUFFIX(j, b, r2, c2, ob + r2 * D, j->P0[b * N + n + M], c1, j->Q0[b * N + n + M]);         \
        }                                                                                                    \
    }                                                                                                        \
    return NULL;                                                                                             \
}                                                                                                            \
                                                                                                             \
/* Returns 0, or 1 when the arguments are outside what the pass handles (the caller then uses PyTorch). */  \
int rtrl_pass_##SUFFIX(int64_t B, int64_t R, int64_t D, int64_t N, int64_t T, const REAL *S, REAL *out,      \
                       const REAL *e0, REAL *grad, const REAL *P0, const REAL *Q0, const REAL *lhs,          \
                       const REAL *x, int64_t F, const REAL *fcoef, REAL *const *fout, REAL decay,           \
                       int64_t fhalf, int threads) {                                                         \
    if (B < 1 || R < 1 || D < 1 || N < 1 || R % N != 0 || (out && (!P0 || !lhs || !x || T < 1))             \
        || (grad && !e0) || F < 0 || (F > 0 && (!fcoef || !fout)))                                           \
        return 1;                                                                                            \
    if (Q0 && out && (N % 2 != 0 || D > 4096)) return 1;                                                     \
    if (fhalf && F > 0 && !(Q0 && out)) return 1;        /* half-size folds come with a paired pass only */  \
    if (threads < 1) threads = 1;                                                                            \
    if (threads > MAX_THREADS) threads = MAX_THREADS;                                                        \
    /* a paired cell's work comes in row pairs: a unit and its partner stay in one thread */                \
    const int64_t items = (Q0 && out) ? R / 2 : R;                                                           \
    if (threads > items) threads = (int)items;                                                               \
    job_##SUFFIX jobs[MAX_THREADS];                                                                          \
    pthread_t ids[MAX_THREADS];                                                                              \
    int started[MAX_THREADS] = {0};                                                                          \
    for (int i = 0; i < threads; i++) {                                                                      \
        job_##SUFFIX j = {B, R, D, N, T, items * i / threads, items * (i + 1) / threads,                     \
                          S, out, e0, grad, P0, Q0, lhs, x, F, fcoef, fout, decay, fhalf && F > 0};          \
        jobs[i] = j;                                                                                         \
    }                                                                                                        \
    for (int i = 1; i < threads; i++)                                                                        \
        started[i] = pthread_create(&ids[i], NULL, work_##SUFFIX, &jobs[i]) == 0;                            \
    work_##SUFFIX(&jobs[0]);                                                                                 \
    for (int i = 1; i < threads; i++) {                                                                      \
        if (started[i]) pthread_join(ids[i], NULL);                                                          \
        else work_##SUFFIX(&jobs[i]);                    /* no thread: this one does its share */           \
    }                                                                                                        \
    return 0;                                                                                                \
}

DEFINE_PASS(f32, float)
DEFINE_PASS(f64, double)
