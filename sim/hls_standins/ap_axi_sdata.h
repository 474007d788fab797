// Project stand-in for Vitis HLS's ap_axi_sdata.h in C simulation: AXI-stream side-channel structs.
#ifndef BNN_STANDIN_AP_AXI_SDATA_H
#define BNN_STANDIN_AP_AXI_SDATA_H
#include <ap_int.h>
// One AXI-stream word; ap_axiu carries unsigned data, ap_axis signed.
template <typename DataT, int D, int U, int TI, int TD>
struct axis_word {
  DataT data;
  ap_uint<(D + 7) / 8> keep;
  ap_uint<(D + 7) / 8> strb;
  ap_uint<(U > 0 ? U : 1)> user;
  ap_uint<1> last;
  ap_uint<(TI > 0 ? TI : 1)> id;
  ap_uint<(TD > 0 ? TD : 1)> dest;
};
template <int D, int U = 0, int TI = 0, int TD = 0>
struct ap_axiu : axis_word<ap_uint<D>, D, U, TI, TD> {};
template <int D, int U = 0, int TI = 0, int TD = 0>
struct ap_axis : axis_word<ap_int<D>, D, U, TI, TD> {};

// QDMA stream word (data, keep, last) with the accessors finn-hlslib's streamtools use.
template <int D, int U, int TI, int TD>
struct qdma_axis {
  ap_uint<D> data;
  ap_uint<(D + 7) / 8> keep;
  ap_uint<1> last;
  ap_uint<D> get_data() const { return data; }
  ap_uint<(D + 7) / 8> get_keep() const { return keep; }
  ap_uint<1> get_last() const { return last; }
  void set_data(ap_uint<D> const &d) { data = d; }
  void set_keep(ap_uint<(D + 7) / 8> const &k) { keep = k; }
  void set_last(ap_uint<1> const &l) { last = l; }
};
#endif
