// The coefficient table of the vectorised exact GELU (gelu_table.c). Internal to CKernels.
#ifndef CNX_GELU_TABLE_H
#define CNX_GELU_TABLE_H

/// Row j: the u^j coefficients of the 16 intervals of [0, 6) (NEON). 64-byte aligned.
extern const float cnx_gelu_q16[6][16];
/// Row j: the u^j coefficients of the 32 intervals of [0, 6) (AVX-512). 64-byte aligned.
extern const float cnx_gelu_q32[5][32];

/// Row j: the u^j coefficients of 32 intervals of degree 2: the quadratic GELU
/// (CNX_ACT_GELU_QUADRATIC), every path. 64-byte aligned.
extern const float cnx_gelu_q32d2[3][32];

#endif
