// StaticFiles: the web page and the socket.io client bundle, read once at
// start-up and served from memory (files are small; no disk I/O on I/O threads).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace chat::endpoints {

struct StaticFile {
  std::shared_ptr<const std::string> body;
  std::string content_type;
};

class StaticFiles {
 public:
  // Load every regular file under root, served as url_prefix + relative path.
  // Returns the number of files loaded (0 when root does not exist). Files
  // whose name ends with skip_suffix (e.g. ".map") are left out.
  std::size_t load_tree(const std::string& root, const std::string& url_prefix,
                        std::string_view skip_suffix = {});
  // Load one file served at url.
  bool load_file(const std::string& path, const std::string& url);

  const StaticFile* find(const std::string& url) const;
  std::size_t size() const { return files_.size(); }

  static std::string content_type_for(const std::string& path);

 private:
  std::map<std::string, StaticFile> files_;
};

}  // namespace chat::endpoints
