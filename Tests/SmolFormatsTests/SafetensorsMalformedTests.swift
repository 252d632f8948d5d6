import Foundation
import Testing
import SmolTensor
import SmolFormats
import SmolTestSupport

/// Tests/Fixtures/malformed/safetensors (tools/make_malformed_safetensors.py): every case must be
/// refused with a `SmolError` naming the right file and containing the expected substring.
@Suite struct SafetensorsMalformedTests {
    static let root = Fixtures.root.appendingPathComponent("malformed/safetensors")

    static let cases: [JSONValue] = {
        let json = try! JSONParser.parse(contentsOf: root.appendingPathComponent("cases.json").path)
        return json.objectValue!["cases"]!.arrayValue!
    }()

    @Test func corpusHasEnoughCases() {
        #expect(Self.cases.count >= 15)
    }

    @Test(arguments: cases.indices)
    func refused(index: Int) throws {
        let c = try #require(Self.cases[index].objectValue)
        let rel = try #require(c["path"]?.stringValue)
        let expect = try #require(c["expect"]?.stringValue)
        let names = try #require(c["names_file"]?.stringValue)
        let path = Self.root.appendingPathComponent(rel).path
        let error = #expect(throws: SmolError.self, "\(rel)") {
            _ = try SafetensorsCheckpoint(path: path)
        }
        let e = try #require(error)
        #expect(e.description.contains(expect), "\(rel): \(e.description)")
        #expect(e.file?.hasSuffix("/" + names) == true, "\(rel): names \(e.file ?? "no file")")
        // Single files fail the same way through SafetensorsFile.
        if rel.hasSuffix(".safetensors") {
            #expect(throws: SmolError.self) { _ = try SafetensorsFile(path: path) }
        }
    }

    /// JSON parser strictness beyond the corpus.
    @Test func jsonParserRejectsNonStandardInput() throws {
        for bad in ["{\"a\":1,}", "[1,]", "01", "1.", ".5", "+1", "NaN", "'a'", "{\"a\" 1}", "\"\\x\"",
                    "\"a\u{01}\"", "tru", "[1] 2", "", "{\"a\":1}{", "\"\\ud800\"", "\"\\udc00\\ud800\"", "//c\n1"] {
            #expect(throws: JSONParser.ParseError.self, "\(bad.debugDescription)") { _ = try JSONParser.parse(bad) }
        }
        let v = try JSONParser.parse(" {\"b\":[1,-0,2.5e3,18446744073709551616,\"\\u00e9\\ud83d\\ude00\\n\"],\"a\":null} ")
        let o = try #require(v.objectValue)
        #expect(o.keys == ["b", "a"])
        let arr = try #require(o["b"]?.arrayValue)
        #expect(arr[0].intValue == 1)
        #expect(arr[2].intValue == nil && arr[2].doubleValue == 2500)
        #expect(arr[3].intValue == nil)  // beyond Int: kept as text, never rounded
        #expect(arr[3].numberValue?.text == "18446744073709551616")
        #expect(arr[4].stringValue == "é😀\n")
        #expect(throws: JSONParser.ParseError.self) { _ = try JSONParser.parse("{\"a\":1,\"a\":2}") }
        let last = try JSONParser.parse("{\"a\":1,\"b\":0,\"a\":2}", duplicateKeys: .keepLast)
        #expect(last.objectValue?.keys == ["a", "b"] && last.objectValue?["a"]?.intValue == 2)
    }

    /// Python's json.dumps(..., indent=2, sort_keys=True) (ensure_ascii) and serde_json's compact
    /// form, for strings that need escaping. Expected texts were produced by Python 3.11 json and
    /// by safetensors 0.8 (serde_json) respectively.
    @Test func jsonWriterEscapesLikePythonAndSerde() throws {
        let v = JSONValue.object(JSONObject([("é", .string("a\"\\\u{01}\u{7f}é😀\n/")), ("B", .array([])), ("a", .object(JSONObject()))]))
        // python3 -c 'import json; print(json.dumps({"é":"a\"\\\x01\x7fé😀\n/","B":[],"a":{}}, indent=2, sort_keys=True))'
        #expect(JSONWriter.python(v) == "{\n  \"B\": [],\n  \"a\": {},\n  \"\\u00e9\": \"a\\\"\\\\\\u0001\\u007f\\u00e9\\ud83d\\ude00\\n/\"\n}")
        // serde_json via python3 -c 'from safetensors.numpy import save; print(save({}, metadata={"é": …}))'
        // (the same string as a __metadata__ value), plus insertion order for the other members
        #expect(JSONWriter.compact(v) == "{\"é\":\"a\\\"\\\\\\u0001\u{7f}é😀\\n/\",\"B\":[],\"a\":{}}")
    }
}
