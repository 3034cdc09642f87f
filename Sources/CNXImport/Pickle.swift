import CNXGraph
import Foundation

/// The callables a PyTorch state dict's pickle may name: the only globals the restricted
/// unpickler accepts. None of them is ever called; each is interpreted by this reader.
public enum PickleGlobal: Equatable, Sendable {
    case orderedDict
    case rebuildTensorV2
    case rebuildParameter
    case rebuildParameterWithState
    /// `torch.FloatStorage` and its siblings: the element type of a saved storage.
    case storageType(TorchStorageType)

    /// The accepted globals by their pickled `module.name`.
    static let allowed: [String: PickleGlobal] = {
        var m: [String: PickleGlobal] = [
            "collections.OrderedDict": .orderedDict,
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch._utils._rebuild_parameter_with_state": .rebuildParameterWithState,
        ]
        for t in TorchStorageType.allCases { m["torch.\(t.rawValue)"] = .storageType(t) }
        return m
    }()

    static var allowedNames: String { allowed.keys.sorted().joined(separator: ", ") }
}

/// The storage classes `torch.save` names, and what their elements are.
public enum TorchStorageType: String, CaseIterable, Sendable {
    case float = "FloatStorage", half = "HalfStorage", bfloat16 = "BFloat16Storage", double = "DoubleStorage"
    case long = "LongStorage", int = "IntStorage", char = "CharStorage"
    case byte = "ByteStorage", bool = "BoolStorage"

    /// The element type of the tensors built on this storage.
    public var dtype: DType {
        switch self {
        case .float: return .float32
        case .half: return .float16
        case .bfloat16: return .bfloat16
        case .double: return .float64
        case .long: return .int64
        case .int: return .int32
        case .char: return .int8
        case .byte: return .uint8
        case .bool: return .bool
        }
    }

    /// Bytes per element.
    public var elementSize: Int {
        switch self {
        case .double, .long: return 8
        case .float, .int: return 4
        case .half, .bfloat16: return 2
        case .char, .byte, .bool: return 1
        }
    }
}

/// A storage named by a persistent id `('storage', type, key, location, numel)`: its bytes are
/// the archive entry `data/<key>`.
public struct PickleStorage: Sendable, Equatable {
    public let type: TorchStorageType
    public let key: String
    public let count: Int
}

/// A tensor rebuilt by `_rebuild_tensor_v2`: a strided view of a storage, in elements.
public struct PickleTensor: Sendable, Equatable {
    public let storage: PickleStorage
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]
}

/// A container the unpickler made; the arena empties them all when the document goes.
protocol PickleContainer: AnyObject {
    func removeAll()
}

/// A list, shared by reference as in Python (the memo may hand out the same list twice).
public final class PickleList: PickleContainer {
    public internal(set) var items: [PickleValue] = []
    func removeAll() { items.removeAll() }
}

/// A tuple. By reference too, so that no value nests inside another by value: a pickle can nest
/// containers 100,000 deep, and freeing such a chain of values would recurse that deep.
public final class PickleTuple: PickleContainer {
    public internal(set) var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
    func removeAll() { items.removeAll() }
}

/// Holds every container of one unpickled document and empties them one by one when it goes,
/// while it still holds them all: freeing a nested structure then never recurses.
final class PickleArena {
    private var containers: [PickleContainer] = []

    func add<C: PickleContainer>(_ c: C) -> C {
        containers.append(c)
        return c
    }

    deinit {
        for c in containers { c.removeAll() }
    }
}

/// The result of an unpickle: its root value, valid while the document is alive (keep it with
/// `withExtendedLifetime`); when it goes, its containers are emptied.
public final class PickleDocument {
    public let root: PickleValue
    let arena: PickleArena

    init(root: PickleValue, arena: PickleArena) {
        self.root = root
        self.arena = arena
    }
}

/// A dict in insertion order, shared by reference as in Python.
public final class PickleDict: PickleContainer {
    public private(set) var keys: [PickleValue] = []
    public private(set) var values: [PickleValue] = []
    private var position: [String: Int] = [:]

    private static func hashKey(_ k: PickleValue) -> String? {
        switch k {
        case .string(let s): return "s" + s
        case .int(let i): return "i\(i)"
        case .bool(let b): return "i\(b ? 1 : 0)"
        case .none: return "n"
        default: return nil
        }
    }

    func set(_ key: PickleValue, _ value: PickleValue) {
        if let h = Self.hashKey(key), let i = position[h] {
            values[i] = value
            return
        }
        if let h = Self.hashKey(key) { position[h] = keys.count }
        keys.append(key)
        values.append(value)
    }

    public subscript(_ key: String) -> PickleValue? { position["s" + key].map { values[$0] } }

    public var count: Int { keys.count }

    func removeAll() {
        keys.removeAll()
        values.removeAll()
        position.removeAll()
    }
}

/// A value the restricted unpickler builds. Only data: nothing in it can run code.
public enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    case global(PickleGlobal)
    case storage(PickleStorage)
    case tensor(PickleTensor)

    /// What kind of value this is, for messages.
    public var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let g): return "global \(g)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// A restricted unpickler: it reads the pickle opcodes that `torch.save` writes for a state dict
/// (and for the plain data beside it in a training checkpoint: numbers, strings, lists, dicts,
/// tuples) and nothing else. It never imports a module or calls a function: the few globals it
/// accepts (`PickleGlobal`) are interpreted here, and any other global or opcode ends the read
/// with an error that names it. References: Python's `Lib/pickle.py` and `pickletools.py`
/// (opcode meanings and argument encodings).
public struct RestrictedUnpickler {
    let bytes: UnsafeRawBufferPointer
    /// Names the source in messages, e.g. "archive/data.pkl".
    let what: String
    /// Nesting limit for values built from a MARK.
    static let maxStack = 1 << 20

    public init(bytes: UnsafeRawBufferPointer, what: String) {
        self.bytes = bytes
        self.what = what
    }

    /// Opcode names, for messages about the ones this reader refuses.
    static let opcodeNames: [UInt8: String] = [
        0x28: "MARK", 0x2e: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT",
        0x4a: "BININT", 0x4b: "BININT1", 0x4c: "LONG", 0x4d: "BININT2", 0x4e: "NONE", 0x50: "PERSID",
        0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING",
        0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT",
        0x7d: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET", 0x69: "INST", 0x6a: "LONG_BINGET",
        0x6c: "LIST", 0x5d: "EMPTY_LIST", 0x6f: "OBJ", 0x70: "PUT", 0x71: "BINPUT", 0x72: "LONG_BINPUT",
        0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
        0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2",
        0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4", 0x42: "BINBYTES",
        0x43: "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8",
        0x8f: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL",
        0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
    ]

    /// Reads the whole pickle; the document's root is the value STOP leaves on the stack.
    public func load() throws -> PickleDocument {
        let arena = PickleArena()
        var cursor = 0
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]

        func fail(_ message: String, at offset: Int) -> CNXError {
            CNXError("\(what), byte \(offset): \(message)")
        }
        func take(_ n: Int, at op: Int) throws -> UnsafeRawBufferPointer {
            guard n >= 0, n <= bytes.count - cursor else {
                throw fail("truncated: the opcode's argument needs \(n) bytes, \(bytes.count - cursor) remain", at: op)
            }
            defer { cursor += n }
            return UnsafeRawBufferPointer(rebasing: bytes[cursor..<cursor + n])
        }
        func uint(_ n: Int, at op: Int) throws -> Int {
            let b = try take(n, at: op)
            var v: UInt64 = 0
            for i in stride(from: n - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
            guard v <= UInt64(Int.max) else { throw fail("length \(v) is out of range", at: op) }
            return Int(v)
        }
        func pop(at op: Int) throws -> PickleValue {
            guard stack.count > (marks.last ?? 0), let v = stack.popLast() else {
                throw fail("the stack is empty above the last MARK", at: op)
            }
            return v
        }
        func popMark(at op: Int) throws -> [PickleValue] {
            guard let m = marks.popLast(), m <= stack.count else { throw fail("no MARK to pop to", at: op) }
            let items = Array(stack[m...])
            stack.removeSubrange(m...)
            return items
        }
        func top(at op: Int) throws -> PickleValue {
            guard let v = stack.last else { throw fail("the stack is empty", at: op) }
            return v
        }
        func text(_ n: Int, at op: Int) throws -> String {
            String(decoding: try take(n, at: op), as: UTF8.self)
        }
        func line(at op: Int) throws -> String {
            guard let end = bytes[cursor...].firstIndex(of: 0x0a) else { throw fail("GLOBAL's name has no end of line", at: op) }
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[cursor..<end]), as: UTF8.self)
            cursor = end + 1
            return s
        }
        func global(_ module: String, _ name: String, at op: Int, opcode: String) throws -> PickleValue {
            let full = "\(module).\(name)"
            guard let g = PickleGlobal.allowed[full] else {
                throw fail(
                    "refused: the pickle imports global '\(full)' (\(opcode)); a state dict may only use \(PickleGlobal.allowedNames). Nothing was executed.",
                    at: op)
            }
            return .global(g)
        }

        while true {
            let op = cursor
            guard cursor < bytes.count else { throw fail("truncated: the pickle ends without STOP", at: op) }
            let code = bytes[cursor]
            cursor += 1
            switch code {
            case 0x80:  // PROTO
                let v = try uint(1, at: op)
                guard (2...5).contains(v) else { throw fail("pickle protocol \(v) is not one torch.save writes", at: op) }
            case 0x95:  // FRAME: a length hint only
                _ = try uint(8, at: op)
            case 0x2e:  // STOP
                guard marks.isEmpty, stack.count == 1 else {
                    throw fail("STOP with \(stack.count) values on the stack and \(marks.count) open marks", at: op)
                }
                return PickleDocument(root: stack[0], arena: arena)
            case 0x28:  // MARK
                guard marks.count < Self.maxStack else { throw fail("too many nested marks", at: op) }
                marks.append(stack.count)
            case 0x30:  // POP
                _ = try pop(at: op)
            case 0x31:  // POP_MARK
                _ = try popMark(at: op)
            case 0x4e: stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4a:  // BININT: signed 32-bit
                let v = try uint(4, at: op)
                stack.append(.int(Int(Int32(truncatingIfNeeded: v))))
            case 0x4b: stack.append(.int(try uint(1, at: op)))
            case 0x4d: stack.append(.int(try uint(2, at: op)))
            case 0x8a:  // LONG1: n bytes of two's complement, little-endian
                let n = try uint(1, at: op)
                guard n <= 8 else { throw fail("an integer of \(n) bytes is too large", at: op) }
                let b = try take(n, at: op)
                var v: UInt64 = 0
                for i in stride(from: n - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[i]) }
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 { v |= ~UInt64(0) << UInt64(8 * n) }
                stack.append(.int(Int(Int64(bitPattern: v))))
            case 0x47:  // BINFLOAT: big-endian double
                let b = try take(8, at: op)
                var v: UInt64 = 0
                for i in 0..<8 { v = v << 8 | UInt64(b[i]) }
                stack.append(.float(Double(bitPattern: v)))
            case 0x58: stack.append(.string(try text(try uint(4, at: op), at: op)))  // BINUNICODE
            case 0x8c: stack.append(.string(try text(try uint(1, at: op), at: op)))  // SHORT_BINUNICODE
            case 0x8d: stack.append(.string(try text(try uint(8, at: op), at: op)))  // BINUNICODE8
            case 0x54, 0x55:  // BINSTRING, SHORT_BINSTRING: Python 2 str, read as Latin-1
                let b = try take(try uint(code == 0x54 ? 4 : 1, at: op), at: op)
                stack.append(.string(String(b.map { Character(Unicode.Scalar($0)) })))
            case 0x42, 0x43, 0x8e:  // BINBYTES, SHORT_BINBYTES, BINBYTES8
                let n = try uint(code == 0x43 ? 1 : code == 0x42 ? 4 : 8, at: op)
                stack.append(.bytes(Array(try take(n, at: op))))
            case 0x29: stack.append(.tuple(arena.add(PickleTuple([]))))
            case 0x74: stack.append(.tuple(arena.add(PickleTuple(try popMark(at: op)))))
            case 0x85, 0x86, 0x87:  // TUPLE1..3
                let n = Int(code) - 0x84
                guard stack.count - (marks.last ?? 0) >= n else { throw fail("TUPLE\(n) needs \(n) values", at: op) }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                stack.append(.tuple(arena.add(PickleTuple(items))))
            case 0x5d: stack.append(.list(arena.add(PickleList())))
            case 0x6c:  // LIST
                let l = arena.add(PickleList())
                l.items = try popMark(at: op)
                stack.append(.list(l))
            case 0x61, 0x65:  // APPEND, APPENDS
                let items = code == 0x61 ? [try pop(at: op)] : try popMark(at: op)
                guard case .list(let l) = try top(at: op) else {
                    throw fail("\(code == 0x61 ? "APPEND" : "APPENDS") to a \(try top(at: op).kind)", at: op)
                }
                l.items.append(contentsOf: items)
            case 0x7d: stack.append(.dict(arena.add(PickleDict())))
            case 0x64, 0x75:  // DICT, SETITEMS
                let items = try popMark(at: op)
                guard items.count % 2 == 0 else { throw fail("an odd number of values for a dict", at: op) }
                let d: PickleDict
                if code == 0x64 {
                    d = arena.add(PickleDict())
                    stack.append(.dict(d))
                } else {
                    guard case .dict(let existing) = try top(at: op) else { throw fail("SETITEMS on a \(try top(at: op).kind)", at: op) }
                    d = existing
                }
                for k in stride(from: 0, to: items.count, by: 2) { d.set(items[k], items[k + 1]) }
            case 0x73:  // SETITEM
                let value = try pop(at: op), key = try pop(at: op)
                guard case .dict(let d) = try top(at: op) else { throw fail("SETITEM on a \(try top(at: op).kind)", at: op) }
                d.set(key, value)
            case 0x71: memo[try uint(1, at: op)] = try top(at: op)  // BINPUT
            case 0x72: memo[try uint(4, at: op)] = try top(at: op)  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top(at: op)  // MEMOIZE
            case 0x68, 0x6a:  // BINGET, LONG_BINGET
                let i = try uint(code == 0x68 ? 1 : 4, at: op)
                guard let v = memo[i] else { throw fail("memo entry \(i) was never stored", at: op) }
                stack.append(v)
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line(at: op), name = try line(at: op)
                stack.append(try global(module, name, at: op, opcode: "GLOBAL"))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(at: op), module = try pop(at: op)
                guard case .string(let m) = module, case .string(let n) = name else {
                    throw fail("STACK_GLOBAL needs two strings, got \(module.kind) and \(name.kind)", at: op)
                }
                stack.append(try global(m, n, at: op, opcode: "STACK_GLOBAL"))
            case 0x51:  // BINPERSID
                stack.append(try persistentLoad(try pop(at: op), at: op, fail: fail))
            case 0x52:  // REDUCE
                let args = try pop(at: op), callable = try pop(at: op)
                guard case .global(let g) = callable, case .tuple(let a) = args else {
                    throw fail("REDUCE of \(callable.kind) with \(args.kind): only the accepted globals are interpreted", at: op)
                }
                stack.append(try reduce(g, a.items, arena: arena, at: op, fail: fail))
            case 0x62:  // BUILD: state for the object below it
                let state = try pop(at: op)
                switch (try top(at: op), state) {
                case (.dict, .dict), (.dict, .none), (.dict, .tuple), (.tensor, _):
                    break  // a state dict's `_metadata` attribute, a parameter's state: not needed
                default:
                    throw fail("BUILD of a \(try top(at: op).kind) with a \(state.kind) is not part of a state dict", at: op)
                }
            default:
                let name = Self.opcodeNames[code].map { "opcode \($0)" } ?? String(format: "unknown opcode 0x%02x", code)
                throw fail("refused: \(name) is not one torch.save writes for a state dict. Nothing was executed.", at: op)
            }
            guard stack.count <= Self.maxStack else { throw fail("the stack grew past \(Self.maxStack) values", at: op) }
        }
    }

    /// `('storage', torch.XStorage, key, location, numel)`: a storage in the archive.
    private func persistentLoad(_ pid: PickleValue, at op: Int, fail: (String, Int) -> CNXError) throws -> PickleValue {
        guard case .tuple(let tuple) = pid, case let t = tuple.items, t.count == 5, case .string("storage") = t[0],
            case .global(.storageType(let type)) = t[1], case .string(let key) = t[2],
            case .int(let count) = t[4], count >= 0
        else {
            throw fail("a persistent id must be ('storage', torch.<Type>Storage, key, location, numel)", op)
        }
        return .storage(PickleStorage(type: type, key: key, count: count))
    }

    /// Interprets a call of an accepted global; nothing is executed.
    private func reduce(
        _ g: PickleGlobal, _ args: [PickleValue], arena: PickleArena, at op: Int,
        fail: (String, Int) -> CNXError
    ) throws -> PickleValue {
        switch g {
        case .orderedDict:
            let d = arena.add(PickleDict())
            if args.isEmpty { return .dict(d) }
            guard args.count == 1, case .list(let l) = args[0] else { throw fail("OrderedDict takes no arguments or a list of pairs", op) }
            for item in l.items {
                guard case .tuple(let pair) = item, case let kv = pair.items, kv.count == 2 else {
                    throw fail("OrderedDict takes a list of pairs", op)
                }
                d.set(kv[0], kv[1])
            }
            return .dict(d)
        case .rebuildTensorV2:
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard args.count >= 6, case .storage(let s) = args[0], case .int(let offset) = args[1], offset >= 0,
                case .tuple(let sizeTuple) = args[2], case .tuple(let strideTuple) = args[3]
            else {
                throw fail("_rebuild_tensor_v2 takes (storage, offset, size, stride, requires_grad, hooks)", op)
            }
            var shape: [Int] = [], strides: [Int] = []
            for v in sizeTuple.items {
                guard case .int(let d) = v, d >= 0 else { throw fail("_rebuild_tensor_v2: size must hold non-negative ints", op) }
                shape.append(d)
            }
            for v in strideTuple.items {
                guard case .int(let d) = v else { throw fail("_rebuild_tensor_v2: stride must hold ints", op) }
                strides.append(d)
            }
            guard shape.count == strides.count else {
                throw fail("_rebuild_tensor_v2: size \(shape) and stride \(strides) differ in rank", op)
            }
            return .tensor(PickleTensor(storage: s, offset: offset, shape: shape, strides: strides))
        case .rebuildParameter, .rebuildParameterWithState:
            guard args.count >= 3, case .tensor(let t) = args[0] else {
                throw fail("_rebuild_parameter takes (tensor, requires_grad, hooks)", op)
            }
            return .tensor(t)
        case .storageType(let t):
            throw fail("refused: torch.\(t.rawValue) may only appear in a persistent id, not be called", op)
        }
    }
}
