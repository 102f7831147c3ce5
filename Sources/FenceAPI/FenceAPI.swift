// FenceAPI: the authenticated HTTP front end (libmicrohttpd via CMicroHTTPD), described by openapi.yaml.
//
// Empty until the HTTP API issue lands; the target exists so the package layout and the dependency
// direction (front end → FenceCore) are fixed from the start.
import FenceCore
