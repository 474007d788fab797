// Project stand-in for Vitis HLS's hls_half.h in C simulation: IEEE binary16 as GCC's _Float16.
#ifndef BNN_STANDIN_HLS_HALF_H
#define BNN_STANDIN_HLS_HALF_H
typedef _Float16 half;
#endif
