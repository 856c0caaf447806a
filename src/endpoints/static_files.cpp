// StaticFiles; see static_files.hpp.
#include "endpoints/static_files.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace chat::endpoints {

namespace fs = std::filesystem;

std::string StaticFiles::content_type_for(const std::string& path) {
  const auto ext = fs::path(path).extension().string();
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "application/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".json" || ext == ".map") return "application/json; charset=utf-8";
  if (ext == ".svg") return "image/svg+xml";
  if (ext == ".png") return "image/png";
  if (ext == ".ico") return "image/x-icon";
  if (ext == ".txt") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

bool StaticFiles::load_file(const std::string& path, const std::string& url) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  files_[url] = StaticFile{std::make_shared<const std::string>(ss.str()), content_type_for(path)};
  return true;
}

std::size_t StaticFiles::load_tree(const std::string& root, const std::string& url_prefix,
                                   std::string_view skip_suffix) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return 0;
  std::size_t n = 0;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const auto rel = fs::relative(it->path(), root, ec).generic_string();
    if (ec || rel.empty() || rel[0] == '.') continue;
    if (!skip_suffix.empty() && rel.ends_with(skip_suffix)) continue;
    if (load_file(it->path().string(), url_prefix + rel)) ++n;
  }
  // "/" serves index.html
  if (auto it = files_.find(url_prefix + "index.html"); it != files_.end())
    files_[url_prefix] = it->second;
  return n;
}

const StaticFile* StaticFiles::find(const std::string& url) const {
  auto it = files_.find(url);
  return it == files_.end() ? nullptr : &it->second;
}

}  // namespace chat::endpoints
