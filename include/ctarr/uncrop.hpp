// ctarr — the uncrop command: crops (images or predicted label maps) pasted back onto the original scan's grid, from
// the crop record that made them.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ctarr {

struct UncropRequest {
  std::string record;               // crop record (JSON) written by crop
  std::vector<std::string> crops;   // one per written box, in the record's order; empty: the record's own crops
                                    // (its label crops when `labels` is true and it has them)
  std::string output;               // image file on the record's input grid
  std::optional<bool> labels;       // true: nearest neighbour, fill 0; false: linear, fill the pad value (scan
                                    // minimum); unset: labels when the crops are the record's label crops or an
                                    // integer type other than the input's
  std::optional<float> fill;        // value outside the boxes
};

struct UncropResult {
  std::string output;
  std::vector<std::string> crops;
  bool labels = false;
  float fill = 0.0f;
};

UncropResult run_uncrop(const UncropRequest& request);

}  // namespace ctarr
