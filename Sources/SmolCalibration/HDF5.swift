import CHDF5
import Foundation
import SmolTensor

// A thin wrapper over libhdf5's C API (1.10, serial): the handful of calls a calibration file
// needs. Every hid_t and raw pointer stays inside these internal types; every failure becomes a
// SmolError naming the file and the object. libhdf5's own error printing is switched off (it
// would write stack dumps to stderr for expected cases such as "does this dataset exist?").

/// The element types datasets are written and read in.
enum HDF5Element {
    case f32, f64, i64

    /// Native type ids are library globals, valid after H5open().
    var nativeType: hid_t {
        switch self {
        case .f32: return smol_h5t_native_float()
        case .f64: return smol_h5t_native_double()
        case .i64: return smol_h5t_native_llong()
        }
    }
}

/// Constants that the C headers define as macros Swift cannot import.
private enum H5Const {
    static let accRDONLY: UInt32 = 0x0000
    static let accTRUNC: UInt32 = 0x0002
    static let defaultPL: hid_t = 0        // H5P_DEFAULT
    static let all: hid_t = 0              // H5S_ALL
    static let errorStack: hid_t = 0       // H5E_DEFAULT
}

/// One open HDF5 file. Not thread-safe: callers serialize access (`CalibrationFile` holds a lock).
final class HDF5File {
    let path: String
    private var id: hid_t

    private static let initialized: Bool = {
        _ = H5open()
        _ = H5Eset_auto2(H5Const.errorStack, nil, nil)
        return true
    }()

    private init(path: String, id: hid_t) { self.path = path; self.id = id }

    /// Creates (truncates) a file for writing.
    static func create(_ path: String) throws -> HDF5File {
        _ = initialized
        let id = H5Fcreate(path, H5Const.accTRUNC, H5Const.defaultPL, H5Const.defaultPL)
        guard id >= 0 else { throw SmolError(.io, file: path, "cannot create the HDF5 file") }
        return HDF5File(path: path, id: id)
    }

    /// Opens a file read-only.
    static func open(_ path: String) throws -> HDF5File {
        _ = initialized
        guard FileManager.default.fileExists(atPath: path) else { throw SmolError(.io, file: path, "no such file") }
        guard H5Fis_hdf5(path) > 0 else { throw SmolError(.malformed, file: path, "not an HDF5 file") }
        let id = H5Fopen(path, H5Const.accRDONLY, H5Const.defaultPL)
        guard id >= 0 else { throw SmolError(.io, file: path, "cannot open the HDF5 file") }
        return HDF5File(path: path, id: id)
    }

    /// Flushes and closes; further calls fail. Called by deinit when forgotten.
    func close() throws {
        guard id >= 0 else { return }
        let r = H5Fclose(id)
        id = -1
        guard r >= 0 else { throw SmolError(.io, file: path, "closing the HDF5 file failed (disk full?)") }
    }

    deinit { if id >= 0 { _ = H5Fclose(id) } }

    private func fail(_ what: String, _ object: String) -> SmolError {
        SmolError(.io, file: path, at: object, what)
    }

    // MARK: writing

    /// Creates a group (and its parents, which must already exist).
    func createGroup(_ name: String) throws {
        let g = H5Gcreate2(id, name, H5Const.defaultPL, H5Const.defaultPL, H5Const.defaultPL)
        guard g >= 0 else { throw fail("cannot create the group", name) }
        H5Gclose(g)
    }

    /// Writes a contiguous dataset of `shape` from `count` elements at `data`.
    func writeDataset(_ name: String, _ element: HDF5Element, shape: [Int], data: UnsafeRawPointer) throws {
        var dims = shape.map { hsize_t($0) }
        let space = H5Screate_simple(Int32(dims.count), &dims, nil)
        guard space >= 0 else { throw fail("cannot create a dataspace of shape \(shape)", name) }
        defer { H5Sclose(space) }
        let ds = H5Dcreate2(id, name, element.nativeType, space, H5Const.defaultPL, H5Const.defaultPL, H5Const.defaultPL)
        guard ds >= 0 else { throw fail("cannot create the dataset", name) }
        defer { H5Dclose(ds) }
        guard H5Dwrite(ds, element.nativeType, H5Const.all, H5Const.all, H5Const.defaultPL, data) >= 0 else {
            throw fail("writing the dataset failed", name)
        }
    }

    func write(_ name: String, _ values: [Float], shape: [Int]) throws {
        try values.withUnsafeBytes { try writeDataset(name, .f32, shape: shape, data: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 4)!) }
    }

    func write(_ name: String, _ values: [Int64], shape: [Int]) throws {
        try values.withUnsafeBytes { try writeDataset(name, .i64, shape: shape, data: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!) }
    }

    /// A second name for an existing object (datasets shared between tensors that see the same input).
    func hardLink(_ existing: String, _ newName: String) throws {
        guard H5Lcreate_hard(id, existing, id, newName, H5Const.defaultPL, H5Const.defaultPL) >= 0 else {
            throw fail("cannot link it to '\(existing)'", newName)
        }
    }

    /// Sets a scalar attribute on the object `object` ("/" for the file).
    func setAttribute(_ object: String, _ name: String, _ value: String) throws {
        let type = H5Tcopy(smol_h5t_c_s1())
        defer { H5Tclose(type) }
        let bytes = Array(value.utf8)
        H5Tset_size(type, max(1, bytes.count))
        H5Tset_cset(type, H5T_CSET_UTF8)
        try withScalarAttribute(object, name, type) { attr in
            let padded = bytes.isEmpty ? [0] : bytes
            return padded.withUnsafeBytes { H5Awrite(attr, type, $0.baseAddress) }
        }
    }

    func setAttribute(_ object: String, _ name: String, _ value: Int64) throws {
        var v = value
        try withScalarAttribute(object, name, smol_h5t_native_llong()) { H5Awrite($0, smol_h5t_native_llong(), &v) }
    }

    func setAttribute(_ object: String, _ name: String, _ value: Double) throws {
        var v = value
        try withScalarAttribute(object, name, smol_h5t_native_double()) { H5Awrite($0, smol_h5t_native_double(), &v) }
    }

    private func withScalarAttribute(_ object: String, _ name: String, _ type: hid_t, _ write: (hid_t) -> herr_t) throws {
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let attr = H5Acreate_by_name(id, object, name, type, space, H5Const.defaultPL, H5Const.defaultPL, H5Const.defaultPL)
        guard attr >= 0 else { throw fail("cannot create attribute '\(name)'", object) }
        defer { H5Aclose(attr) }
        guard write(attr) >= 0 else { throw fail("writing attribute '\(name)' failed", object) }
    }

    // MARK: reading

    func exists(_ name: String) -> Bool {
        // H5Lexists checks one link at a time: walk the path so a missing parent is "no", not an error.
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += "/" + part
            guard H5Lexists(id, prefix, H5Const.defaultPL) > 0 else { return false }
        }
        return true
    }

    /// The shape of a dataset.
    func shape(_ name: String) throws -> [Int] {
        let ds = H5Dopen2(id, name, H5Const.defaultPL)
        guard ds >= 0 else { throw SmolError(.malformed, file: path, at: name, "no such dataset") }
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0, rank <= 8 else { throw SmolError(.malformed, file: path, at: name, "dataset rank \(rank)") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1))
        H5Sget_simple_extent_dims(space, &dims, nil)
        return dims.prefix(rank).map { Int($0) }
    }

    /// Reads a whole dataset converted to `element` (libhdf5 converts numeric types on read).
    /// `limit`: the most elements the caller accepts (checked before allocating).
    private func read<T: Numeric>(_ name: String, _ element: HDF5Element, limit: Int) throws -> (values: [T], shape: [Int]) {
        let shape = try shape(name)
        guard let n = Checked.product(shape), n <= limit else {
            throw SmolError(.malformed, file: path, at: name, "dataset of shape \(shape) is larger than expected (at most \(limit) elements)")
        }
        let ds = H5Dopen2(id, name, H5Const.defaultPL)
        guard ds >= 0 else { throw SmolError(.malformed, file: path, at: name, "no such dataset") }
        defer { H5Dclose(ds) }
        var out = [T](repeating: 0, count: n)
        let r = out.withUnsafeMutableBytes { H5Dread(ds, element.nativeType, H5Const.all, H5Const.all, H5Const.defaultPL, $0.baseAddress) }
        guard r >= 0 else { throw SmolError(.malformed, file: path, at: name, "reading the dataset failed (not numeric?)") }
        return (out, shape)
    }

    func readFloats(_ name: String, limit: Int) throws -> (values: [Float], shape: [Int]) { try read(name, .f32, limit: limit) }

    /// Reads index `index` of a dataset's leading dimension ([d0, rest…] → [rest…]) as Float32,
    /// through a hyperslab: an expert's Hessian without reading every expert's.
    func readFloats(_ name: String, leading index: Int, limit: Int) throws -> (values: [Float], shape: [Int]) {
        let shape = try shape(name)
        guard shape.count >= 1, index >= 0, index < shape[0] else {
            throw SmolError(.malformed, file: path, at: name, "no entry \(index) along the first dimension of a dataset of shape \(shape)")
        }
        let rest = Array(shape.dropFirst())
        guard let n = Checked.product(rest), n <= limit else {
            throw SmolError(.malformed, file: path, at: name, "dataset of shape \(shape) is larger than expected (at most \(limit) elements per entry)")
        }
        let ds = H5Dopen2(id, name, H5Const.defaultPL)
        guard ds >= 0 else { throw SmolError(.malformed, file: path, at: name, "no such dataset") }
        defer { H5Dclose(ds) }
        let fileSpace = H5Dget_space(ds)
        defer { H5Sclose(fileSpace) }
        var start = [hsize_t](repeating: 0, count: shape.count)
        start[0] = hsize_t(index)
        var count = shape.map { hsize_t($0) }
        count[0] = 1
        guard H5Sselect_hyperslab(fileSpace, H5S_SELECT_SET, start, nil, count, nil) >= 0 else {
            throw SmolError(.malformed, file: path, at: name, "cannot select entry \(index)")
        }
        var memDims = [hsize_t(max(n, 1))]
        let memSpace = H5Screate_simple(1, &memDims, nil)
        defer { H5Sclose(memSpace) }
        var out = [Float](repeating: 0, count: n)
        let r = out.withUnsafeMutableBytes { H5Dread(ds, HDF5Element.f32.nativeType, memSpace, fileSpace, H5Const.defaultPL, $0.baseAddress) }
        guard r >= 0 else { throw SmolError(.malformed, file: path, at: name, "reading entry \(index) failed (not numeric?)") }
        return (out, rest)
    }
    func readInt64s(_ name: String, limit: Int) throws -> (values: [Int64], shape: [Int]) { try read(name, .i64, limit: limit) }

    func stringAttribute(_ object: String, _ name: String) throws -> String? {
        guard H5Aexists_by_name(id, object, name, H5Const.defaultPL) > 0 else { return nil }
        let attr = H5Aopen_by_name(id, object, name, H5Const.defaultPL, H5Const.defaultPL)
        guard attr >= 0 else { throw fail("cannot open attribute '\(name)'", object) }
        defer { H5Aclose(attr) }
        let type = H5Aget_type(attr)
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_STRING, H5Tis_variable_str(type) == 0 else {
            throw SmolError(.malformed, file: path, at: "\(object) attribute '\(name)'", "not a fixed-length string")
        }
        let size = H5Tget_size(type)
        guard size > 0, size < 1 << 20 else { throw SmolError(.malformed, file: path, at: "\(object) attribute '\(name)'", "string of \(size) bytes") }
        var buf = [UInt8](repeating: 0, count: size + 1)
        guard buf.withUnsafeMutableBytes({ H5Aread(attr, type, $0.baseAddress) }) >= 0 else {
            throw fail("reading attribute '\(name)' failed", object)
        }
        let end = buf.firstIndex(of: 0) ?? size
        return String(decoding: buf[..<end], as: UTF8.self)
    }

    func int64Attribute(_ object: String, _ name: String) throws -> Int64? {
        guard H5Aexists_by_name(id, object, name, H5Const.defaultPL) > 0 else { return nil }
        let attr = H5Aopen_by_name(id, object, name, H5Const.defaultPL, H5Const.defaultPL)
        guard attr >= 0 else { throw fail("cannot open attribute '\(name)'", object) }
        defer { H5Aclose(attr) }
        var v: Int64 = 0
        guard H5Aread(attr, smol_h5t_native_llong(), &v) >= 0 else {
            throw SmolError(.malformed, file: path, at: "\(object) attribute '\(name)'", "not an integer")
        }
        return v
    }

    /// Names of the links in a group, in libhdf5's name order.
    func children(_ group: String) throws -> [String] {
        final class Box { var names: [String] = [] }
        let box = Box()
        var idx: hsize_t = 0
        let r = withExtendedLifetime(box) {
            H5Literate_by_name(id, group, H5_INDEX_NAME, H5_ITER_INC, &idx, { _, name, _, data in
                let b = Unmanaged<Box>.fromOpaque(data!).takeUnretainedValue()
                b.names.append(String(cString: name!))
                return 0
            }, Unmanaged.passUnretained(box).toOpaque(), H5Const.defaultPL)
        }
        guard r >= 0 else { throw SmolError(.malformed, file: path, at: group, "cannot list the group") }
        return box.names
    }
}
