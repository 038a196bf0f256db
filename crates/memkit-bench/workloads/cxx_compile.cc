// g++: the C++ file the `gxx` workload compiles (g++ -O2 -c). It is a small
// but real program: a tokenizer and evaluator for a tiny expression
// language, an inventory report and a graph search, written with the
// standard library's heavier templates (variant, maps, streams,
// algorithms, shared_ptr, function) so that the compiler allocates a lot.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <queue>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace calc {

struct Token {
    enum class Kind { Number, Ident, Op, LParen, RParen, End } kind;
    std::string text;
    double value = 0;
};

std::vector<Token> tokenize(const std::string& src) {
    std::vector<Token> out;
    size_t i = 0;
    while (i < src.size()) {
        char c = src[i];
        if (std::isspace(static_cast<unsigned char>(c))) {
            ++i;
        } else if (std::isdigit(static_cast<unsigned char>(c))) {
            size_t used = 0;
            double v = std::stod(src.substr(i), &used);
            out.push_back({Token::Kind::Number, src.substr(i, used), v});
            i += used;
        } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
            size_t j = i;
            while (j < src.size() && (std::isalnum(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
            out.push_back({Token::Kind::Ident, src.substr(i, j - i)});
            i = j;
        } else if (c == '(' || c == ')') {
            out.push_back({c == '(' ? Token::Kind::LParen : Token::Kind::RParen, std::string(1, c)});
            ++i;
        } else if (src.compare(i, 2, "**") == 0) {
            out.push_back({Token::Kind::Op, "**"});
            i += 2;
        } else if (std::string("+-*/%^=").find(c) != std::string::npos) {
            out.push_back({Token::Kind::Op, std::string(1, c)});
            ++i;
        } else {
            throw std::runtime_error(std::string("bad character: ") + c);
        }
    }
    out.push_back({Token::Kind::End, ""});
    return out;
}

struct Expr;
using ExprPtr = std::shared_ptr<Expr>;
struct Num { double v; };
struct Var { std::string name; };
struct Bin { char op; ExprPtr lhs, rhs; };
struct Call { std::string fn; std::vector<ExprPtr> args; };
struct Expr { std::variant<Num, Var, Bin, Call> node; };

class Parser {
  public:
    explicit Parser(std::vector<Token> toks) : toks_(std::move(toks)) {}
    ExprPtr parse() {
        auto e = sum();
        if (peek().kind != Token::Kind::End)
            throw std::runtime_error("trailing input: " + peek().text);
        return e;
    }

  private:
    const Token& peek() const { return toks_[pos_]; }
    const Token& next() { return toks_[pos_++]; }
    bool accept(const std::string& op) {
        if (peek().kind == Token::Kind::Op && peek().text == op) {
            ++pos_;
            return true;
        }
        return false;
    }
    ExprPtr sum() {
        auto e = product();
        for (;;) {
            if (accept("+")) e = std::make_shared<Expr>(Expr{Bin{'+', e, product()}});
            else if (accept("-")) e = std::make_shared<Expr>(Expr{Bin{'-', e, product()}});
            else return e;
        }
    }
    ExprPtr product() {
        auto e = power();
        for (;;) {
            if (accept("*")) e = std::make_shared<Expr>(Expr{Bin{'*', e, power()}});
            else if (accept("/")) e = std::make_shared<Expr>(Expr{Bin{'/', e, power()}});
            else if (accept("%")) e = std::make_shared<Expr>(Expr{Bin{'%', e, power()}});
            else return e;
        }
    }
    ExprPtr power() {
        auto base = atom();
        if (accept("**") || accept("^")) return std::make_shared<Expr>(Expr{Bin{'^', base, power()}});
        return base;
    }
    ExprPtr atom() {
        const Token& t = next();
        switch (t.kind) {
        case Token::Kind::Number:
            return std::make_shared<Expr>(Expr{Num{t.value}});
        case Token::Kind::Ident:
            if (peek().kind == Token::Kind::LParen) {
                next();
                Call c{t.text, {}};
                if (peek().kind != Token::Kind::RParen) c.args.push_back(sum());
                if (next().kind != Token::Kind::RParen) throw std::runtime_error("expected )");
                return std::make_shared<Expr>(Expr{std::move(c)});
            }
            return std::make_shared<Expr>(Expr{Var{t.text}});
        case Token::Kind::LParen: {
            auto e = sum();
            if (next().kind != Token::Kind::RParen) throw std::runtime_error("expected )");
            return e;
        }
        default:
            throw std::runtime_error("unexpected token: " + t.text);
        }
    }
    std::vector<Token> toks_;
    size_t pos_ = 0;
};

template <class... Fs> struct Overloaded : Fs... { using Fs::operator()...; };
template <class... Fs> Overloaded(Fs...) -> Overloaded<Fs...>;

double eval(const ExprPtr& e, const std::map<std::string, double>& env,
            const std::unordered_map<std::string, std::function<double(double)>>& fns) {
    return std::visit(Overloaded{
        [](const Num& n) { return n.v; },
        [&](const Var& v) {
            auto it = env.find(v.name);
            if (it == env.end()) throw std::runtime_error("unbound: " + v.name);
            return it->second;
        },
        [&](const Bin& b) {
            double l = eval(b.lhs, env, fns), r = eval(b.rhs, env, fns);
            switch (b.op) {
            case '+': return l + r;
            case '-': return l - r;
            case '*': return l * r;
            case '/': return l / r;
            case '%': return static_cast<double>(static_cast<int64_t>(l) % static_cast<int64_t>(r));
            default: {
                double p = 1;
                for (int i = 0; i < static_cast<int>(r); ++i) p *= l;
                return p;
            }
            }
        },
        [&](const Call& c) {
            auto it = fns.find(c.fn);
            if (it == fns.end()) throw std::runtime_error("no function " + c.fn);
            return it->second(c.args.empty() ? 0.0 : eval(c.args[0], env, fns));
        }}, e->node);
}

} // namespace calc

namespace inventory {

struct Item {
    std::string sku, name, category;
    int quantity;
    double price;
};

std::vector<Item> parse_csv(std::istream& in) {
    std::vector<Item> items;
    std::string line;
    while (std::getline(in, line)) {
        std::stringstream ss(line);
        Item it;
        std::string qty, price;
        if (std::getline(ss, it.sku, ',') && std::getline(ss, it.name, ',') &&
            std::getline(ss, it.category, ',') && std::getline(ss, qty, ',') && std::getline(ss, price)) {
            it.quantity = std::stoi(qty);
            it.price = std::stod(price);
            items.push_back(std::move(it));
        }
    }
    return items;
}

std::string report(std::vector<Item> items) {
    std::map<std::string, std::vector<const Item*>> by_cat;
    for (const auto& it : items) by_cat[it.category].push_back(&it);
    std::ostringstream out;
    out << std::fixed << std::setprecision(2);
    for (auto& [cat, list] : by_cat) {
        std::sort(list.begin(), list.end(), [](const Item* a, const Item* b) {
            return a->price * a->quantity > b->price * b->quantity;
        });
        double total = std::accumulate(list.begin(), list.end(), 0.0,
                                       [](double s, const Item* i) { return s + i->price * i->quantity; });
        out << cat << ": " << list.size() << " items, value " << total << "\n";
        for (const Item* i : list) out << "  " << std::setw(10) << i->sku << " " << i->name << "\n";
    }
    return out.str();
}

} // namespace inventory

namespace graph {

using Graph = std::unordered_map<std::string, std::vector<std::pair<std::string, double>>>;

std::optional<std::pair<double, std::vector<std::string>>> shortest(const Graph& g, const std::string& from,
                                                                   const std::string& to) {
    using Entry = std::pair<double, std::string>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
    std::unordered_map<std::string, double> dist;
    std::unordered_map<std::string, std::string> prev;
    std::set<std::string> done;
    dist[from] = 0;
    queue.push({0, from});
    while (!queue.empty()) {
        auto [d, node] = queue.top();
        queue.pop();
        if (!done.insert(node).second) continue;
        if (node == to) break;
        auto it = g.find(node);
        if (it == g.end()) continue;
        for (const auto& [next, w] : it->second) {
            auto found = dist.find(next);
            if (found == dist.end() || d + w < found->second) {
                dist[next] = d + w;
                prev[next] = node;
                queue.push({d + w, next});
            }
        }
    }
    if (!dist.count(to)) return std::nullopt;
    std::vector<std::string> path{to};
    while (path.back() != from) path.push_back(prev[path.back()]);
    std::reverse(path.begin(), path.end());
    return std::make_pair(dist[to], path);
}

} // namespace graph

int main(int argc, char** argv) {
    std::map<std::string, double> env{{"x", 3}, {"y", 4}};
    std::unordered_map<std::string, std::function<double(double)>> fns{
        {"sq", [](double v) { return v * v; }}, {"neg", [](double v) { return -v; }}};
    std::vector<std::string> exprs{"x * x + y * y", "sq(x + y) - 2 * x * y", "(1 + 2) ** 3 % 5", "neg(x) / y"};
    for (int i = 1; i < argc; ++i) exprs.push_back(argv[i]);
    for (const auto& src : exprs) {
        try {
            calc::Parser p(calc::tokenize(src));
            std::cout << src << " = " << calc::eval(p.parse(), env, fns) << "\n";
        } catch (const std::exception& e) {
            std::cout << src << ": error: " << e.what() << "\n";
        }
    }
    std::istringstream csv("A1,bolt,hardware,100,0.10\nA2,nut,hardware,250,0.05\nB1,glue,supplies,3,4.50\n");
    std::cout << inventory::report(inventory::parse_csv(csv));
    graph::Graph g{{"a", {{"b", 1}, {"c", 4}}}, {"b", {{"c", 1}, {"d", 5}}}, {"c", {{"d", 1}}}};
    if (auto r = graph::shortest(g, "a", "d")) {
        std::cout << "a->d " << r->first << ":";
        for (const auto& n : r->second) std::cout << " " << n;
        std::cout << "\n";
    }
    return 0;
}
