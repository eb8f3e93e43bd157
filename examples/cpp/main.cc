// sparsert_run: load a .spr model, run it on one input read from a .npy file
// (float32, C order) or a raw little-endian float32 file, print the outputs.
//
//   sparsert_run model.spr input.npy [output.npy] [--threads N]
//   sparsert_run model.spr input.raw --shape 1,784
//
// Output: for each model output a line "name shape" followed by its values,
// one per line with 9 significant digits; with output.npy the first output
// is also written as .npy.
#include <sparsert/sparsert.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::stringstream s(text);
  std::string item;
  while (std::getline(s, item, ',')) {
    if (item.empty()) continue;
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || v < 0) throw std::runtime_error("bad shape '" + text + "'");
    shape.push_back(v);
  }
  return shape;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Minimal .npy (format 1.0-3.0) reader for little-endian float32 C-order arrays.
sparsert::Tensor read_npy(const std::string& path) {
  std::string bytes = read_all(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0)
    throw std::runtime_error(path + ": not a .npy file");
  const unsigned major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, header_start;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else {
    if (bytes.size() < 12) throw std::runtime_error(path + ": truncated .npy header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    header_start = 12;
  }
  if (header_start + header_len > bytes.size()) throw std::runtime_error(path + ": truncated .npy header");
  const std::string header = bytes.substr(header_start, header_len);
  if (header.find("'descr': '<f4'") == std::string::npos)
    throw std::runtime_error(path + ": expected float32 ('<f4') data, header: " + header);
  if (header.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error(path + ": Fortran-ordered arrays are not supported");
  size_t open = header.find("'shape': (");
  size_t close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) throw std::runtime_error(path + ": no shape");
  std::string dims = header.substr(open + 10, close - open - 10);
  std::string cleaned;
  for (char c : dims)
    if (c != ' ') cleaned += c;
  sparsert::Tensor t(parse_shape(cleaned));
  const size_t data_start = header_start + header_len;
  const size_t want = static_cast<size_t>(t.size()) * sizeof(float);
  if (bytes.size() - data_start != want) throw std::runtime_error(path + ": data size does not match the shape");
  std::memcpy(t.data(), bytes.data() + data_start, want);
  return t;
}

void write_npy(const std::string& path, const sparsert::Tensor& t) {
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) shape += std::to_string(t.shape()[i]) + ", ";
  if (t.shape().size() > 1) shape.resize(shape.size() - 2);
  shape += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  f.write(len_bytes, 2);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  f.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.size() * sizeof(float)));
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::string shape_arg;
  sparsert::LoadOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--shape" && i + 1 < argc) {
      shape_arg = argv[++i];
    } else if (a == "--threads" && i + 1 < argc) {
      options.threads = std::atoi(argv[++i]);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() < 2 || positional.size() > 3) {
    std::cerr << "usage: sparsert_run model.spr input.npy|input.raw [output.npy] [--shape d0,d1,...] [--threads N]\n";
    return 2;
  }
  try {
    sparsert::Model model = sparsert::Model::load(positional[0], options);
    sparsert::Tensor input;
    const std::string& in_path = positional[1];
    if (in_path.size() >= 4 && in_path.compare(in_path.size() - 4, 4, ".npy") == 0) {
      input = read_npy(in_path);
    } else {
      if (shape_arg.empty()) throw std::runtime_error("a raw input needs --shape");
      input = sparsert::Tensor(parse_shape(shape_arg));
      std::string bytes = read_all(in_path);
      if (bytes.size() != static_cast<size_t>(input.size()) * sizeof(float))
        throw std::runtime_error(in_path + ": size does not match --shape");
      std::memcpy(input.data(), bytes.data(), bytes.size());
    }
    std::vector<sparsert::Tensor> outputs = model.run({input});
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::cout << model.outputs()[i].name;
      for (int64_t d : outputs[i].shape()) std::cout << ' ' << d;
      std::cout << '\n';
      char buf[32];
      for (int64_t k = 0; k < outputs[i].size(); ++k) {
        std::snprintf(buf, sizeof(buf), "%.9g\n", static_cast<double>(outputs[i].data()[k]));
        std::cout << buf;
      }
    }
    if (positional.size() == 3) write_npy(positional[2], outputs[0]);
  } catch (const sparsert::Error& e) {
    std::cerr << "sparsert error: " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
